//! EC2's ClientToken for one attempt of a run: derived from the run, never
//! from the clock, so that a retried request is byte-identical.

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The ClientToken of one attempt of a run (64 hex characters, EC2's
/// maximum): the same for a retried request, another for another attempt or
/// another run.
pub fn client_token(
    profile: &str,
    job: &str,
    run: (u32, u64),
    payload_sha256: &str,
    attempt: (&str, &str, bool),
) -> String {
    use sha2::Digest as _;
    let (instance_type, subnet, spot) = attempt;
    let (run, launched_at) = (run.0.to_string(), run.1.to_string());
    let mut h = sha2::Sha256::new();
    for part in [
        profile,
        job,
        &run,
        &launched_at,
        payload_sha256,
        instance_type,
        subnet,
        if spot { "spot" } else { "on-demand" },
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex(&h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_differ_by_attempt_and_run_and_fit_ec2() {
        let token = |job: &str, run: (u32, u64), attempt: (&str, &str, bool)| {
            client_token("p", job, run, "sha", attempt)
        };
        let a = token("j", (1, 100), ("g6e.xlarge", "subnet-1", false));
        assert_eq!(a.len(), 64);
        assert!(a.is_ascii());
        assert_eq!(a, token("j", (1, 100), ("g6e.xlarge", "subnet-1", false)));
        for other in [
            token("j", (1, 100), ("g6e.xlarge", "subnet-2", false)),
            token("j2", (1, 100), ("g6e.xlarge", "subnet-1", false)),
            token("j", (1, 100), ("g6e.xlarge", "subnet-1", true)),
            token("j", (2, 100), ("g6e.xlarge", "subnet-1", false)),
            token("j", (1, 101), ("g6e.xlarge", "subnet-1", false)),
        ] {
            assert_ne!(a, other);
        }
    }
}
