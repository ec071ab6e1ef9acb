//! EC2's ClientToken for one RunInstances request of an attempt: derived
//! from the run and the attempt, never from the clock, so that a retried
//! request is byte-identical.

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The ClientToken of one request (64 hex characters, EC2's maximum): the
/// same for a retried request, another for another request, attempt or run.
/// `run` is (run, attempt, the attempt's launch time).
pub fn client_token(
    profile: &str,
    job: &str,
    run: (u32, u32, u64),
    payload_sha256: &str,
    request: (&str, &str, bool),
) -> String {
    use sha2::Digest as _;
    let (instance_type, subnet, spot) = request;
    let (run, attempt, launched_at) = (run.0.to_string(), run.1, run.2.to_string());
    // The first attempt's tokens are those of claims written before
    // attempts existed.
    let attempt = (attempt > 1).then(|| format!("attempt {attempt}"));
    let mut h = sha2::Sha256::new();
    for part in [
        profile,
        job,
        &run,
        &launched_at,
        payload_sha256,
        instance_type,
        subnet,
        crate::compile::model::Market::of_request(spot).name(),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    if let Some(attempt) = attempt {
        h.update(attempt.as_bytes());
        h.update([0]);
    }
    hex(&h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_differ_by_attempt_and_run_and_fit_ec2() {
        let token = |job: &str, run: (u32, u64), request: (&str, &str, bool)| {
            client_token("p", job, (run.0, 1, run.1), "sha", request)
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
            client_token(
                "p",
                "j",
                (1, 2, 100),
                "sha",
                ("g6e.xlarge", "subnet-1", false),
            ),
        ] {
            assert_ne!(a, other);
        }
    }
}
