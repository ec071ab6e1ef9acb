//! `compile`: the payload's bytes, its packing and what makes it refuse.

use std::io::Read as _;

use crate::{Test, fixtures, root};

/// What EC2 receives for the default profile: its golden file, gzipped
/// (the golden file is the readable user-data; past the size budget raw,
/// the payload is gzipped).
pub fn default_launched_bytes() -> Vec<u8> {
    let golden = std::fs::read(root().join("golden/traffic-sign-gpu.yaml")).unwrap();
    assert!(
        golden.len() > bootforge::SIZE_BUDGET,
        "the default payload is gzipped only past the budget"
    );
    bootforge::gzip(&golden)
}

#[test]
fn compiles_the_default_profile_to_its_golden_bytes() {
    let run = Test::new().arg("compile").run().success();
    assert!(
        run.output.stdout == default_launched_bytes(),
        "compile prints golden/traffic-sign-gpu.yaml gzipped"
    );
    let run = Test::new()
        .args(["compile", "--format", "cloud-config"])
        .run()
        .success();
    let golden = std::fs::read(root().join("golden/traffic-sign-gpu.yaml")).unwrap();
    assert!(
        run.output.stdout == golden,
        "cloud-config is the golden file"
    );
}

#[test]
fn the_same_inputs_give_the_same_bytes() {
    let a = Test::with_fixtures()
        .args(["compile", "gzipped"])
        .run()
        .success();
    let b = Test::with_fixtures()
        .args(["compile", "gzipped"])
        .run()
        .success();
    assert_eq!(a.output.stdout, b.output.stdout);
    let a = Test::new()
        .args(["compile", "g6-quick", "--format", "base64"])
        .run()
        .success();
    let b = Test::new()
        .args(["compile", "g6-quick", "--format", "base64"])
        .run()
        .success();
    assert_eq!(a.output.stdout, b.output.stdout);
}

#[test]
fn a_hostile_value_in_a_shell_template_comes_out_quoted() {
    let hostile = "x'; touch /tmp/pwned #$(id) `id`";
    let run = Test::with_fixtures()
        .args(["compile", "echo", "--format", "cloud-config", "--set"])
        .arg(format!("snippets.echo.message={hostile}"))
        .run()
        .success();
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&run.stdout()).unwrap();
    let script = doc["write_files"][0]["content"].as_str().unwrap();
    assert_eq!(
        script,
        "#!/bin/bash\nprintf '%s\\n' 'x'\\''; touch /tmp/pwned #$(id) `id`' \n"
    );
    // And bash reads it back as one word, unexecuted.
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{hostile}\n")
    );
}

#[test]
fn lists_append_and_agreeing_scalars_merge() {
    let run = Test::with_fixtures()
        .args(["compile", "merged", "--format", "cloud-config"])
        .run()
        .success();
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&run.stdout()).unwrap();
    let runcmd: Vec<String> = doc["runcmd"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|c| serde_json::to_string(c).unwrap())
        .collect();
    assert_eq!(
        runcmd,
        ["[\"/usr/local/bin/echo-it\"]", "[\"echo\",\"second\"]"]
    );
    assert_eq!(doc["power_state"]["mode"].as_str(), Some("poweroff"));
    let keys: Vec<&str> = doc
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(keys, ["write_files", "runcmd", "power_state"]);
}

#[test]
fn disagreeing_scalars_name_both_snippets() {
    let run = Test::with_fixtures()
        .args(["compile", "echo", "--set", "snippets.conflicting-power={}"])
        .run()
        .failure(1);
    insta::assert_snapshot!(run.stderr_scrubbed(), @r#"
    error[merge-conflict]: snippets `echo` and `conflicting-power` both set cloud-config `power_state.mode`: `echo` says "poweroff", `conflicting-power` says "reboot" (in tests/fixtures/snippets/conflicting-power/cloud-config.yaml)
      --> --set:1:28
      |
    1 | snippets.conflicting-power={}
      |                            ^^
      = help: change one snippet's parameters so that they agree, or drop one of the snippets
    "#);
}

#[test]
fn multipart_mime_decodes_back_to_the_same_document_and_parts() {
    let cloud_config = Test::with_fixtures()
        .args(["compile", "multipart", "--format", "cloud-config"])
        .run()
        .success()
        .output
        .stdout;
    let payload = Test::with_fixtures()
        .args(["compile", "multipart"])
        .run()
        .success()
        .output
        .stdout;
    let mail = mailparse::parse_mail(&payload).unwrap();
    assert_eq!(mail.ctype.mimetype, "multipart/mixed");
    assert_eq!(mail.ctype.params["boundary"], bootforge::BOUNDARY);
    assert_eq!(mail.subparts.len(), 2);
    assert_eq!(mail.subparts[0].ctype.mimetype, "text/cloud-config");
    assert_eq!(mail.subparts[0].get_body_raw().unwrap(), cloud_config);
    assert_eq!(mail.subparts[1].ctype.mimetype, "text/x-shellscript");
    assert_eq!(
        mail.subparts[1].get_body().unwrap(),
        "#!/bin/sh\necho 'héllo wörld'\n"
    );
}

#[test]
fn gzip_output_decodes_back_to_the_mime_payload() {
    let gz = Test::with_fixtures()
        .args(["compile", "gzipped"])
        .run()
        .success()
        .output
        .stdout;
    assert_eq!(&gz[..2], &[0x1f, 0x8b]);
    assert_eq!(&gz[4..8], &[0, 0, 0, 0], "gzip mtime must be 0");
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut plain)
        .unwrap();
    let mime = Test::with_fixtures()
        .args(["compile", "gzipped", "--format", "mime"])
        .run()
        .success()
        .output
        .stdout;
    assert_eq!(plain, mime);
}

#[test]
fn base64_is_what_ec2_carries() {
    use base64::Engine as _;
    let raw = Test::new().arg("compile").run().success().output.stdout;
    let b64 = Test::new()
        .args(["compile", "--format", "base64"])
        .run()
        .success()
        .stdout();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64.trim_end())
        .unwrap();
    assert_eq!(decoded, raw);
}

#[test]
fn a_payload_past_the_limit_is_gzipped_then_refused() {
    // 20 kB of one letter: over the limit raw, far under it gzipped.
    let run = Test::with_fixtures()
        .args(["compile", "base", "--set", "snippets.greedy={}", "--set"])
        .arg(format!("snippets.greedy.text={}", "a".repeat(20_000)))
        .run()
        .success();
    assert_eq!(&run.output.stdout[..2], &[0x1f, 0x8b]);
    assert!(run.output.stdout.len() < bootforge::USER_DATA_LIMIT);

    // 40 kB of noise does not fit even gzipped.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let noise: String = (0..40_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'a' + (state % 26) as u8)
        })
        .collect();
    let run = Test::with_fixtures()
        .args(["compile", "base", "--set", "snippets.greedy={}", "--set"])
        .arg(format!("snippets.greedy.text={noise}"))
        .run()
        .failure(1);
    assert!(
        run.stderr()
            .contains("more than EC2's user-data limit of 16384 bytes"),
        "{}",
        run.stderr()
    );
}

#[test]
fn output_file_is_written_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("user-data");
    Test::new()
        .args(["compile", "-o"])
        .arg(&path)
        .run()
        .success();
    assert!(
        std::fs::read(&path).unwrap() == default_launched_bytes(),
        "-o writes golden/traffic-sign-gpu.yaml gzipped"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary file is left"
    );
}

#[test]
fn a_profile_can_be_given_as_a_path() {
    let path = fixtures().join("profiles/echo.yaml");
    let run = Test::new()
        .args(["--snippets"])
        .arg(fixtures().join("snippets"))
        .arg("--profiles")
        .arg(fixtures().join("profiles"))
        .arg("compile")
        .arg(&path)
        .run()
        .success();
    assert!(
        run.stdout()
            .contains("# generated by bootforge from profile echo;")
    );
}
