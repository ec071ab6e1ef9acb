fn main() {
    // A reader that stops reading (`bootforge list | head`) ends the program
    // quietly, as it does every Unix tool, instead of making printing fail.
    #[cfg(unix)]
    // SAFETY: restoring a signal's default disposition before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    std::process::exit(bootforge::run(std::env::args_os()));
}
