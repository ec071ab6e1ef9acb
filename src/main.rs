fn main() {
    std::process::exit(bootforge::run(std::env::args_os()));
}
