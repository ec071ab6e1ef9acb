//! AWS's names and ids as bootforge checks them: one set of patterns for the
//! JSON Schema and for `validate`, the regions of every partition, and the
//! instance types the SDK knows.

/// Whole-string patterns of the ids a profile holds.
pub const AMI: &str = "^ami-([0-9a-f]{8}|[0-9a-f]{17})$";
pub const SUBNET: &str = "^subnet-([0-9a-f]{8}|[0-9a-f]{17})$";
pub const SECURITY_GROUP: &str = "^sg-([0-9a-f]{8}|[0-9a-f]{17})$";
pub const ACCOUNT: &str = "^[0-9]{12}$";
/// The shape every partition's regions share (the SDK's partitions give one
/// regex each; this is their union).
pub const REGION: &str = "^[a-z]{2,4}(-[a-z]+)?-[a-z]+-[0-9]+$";
/// An availability zone: its region and a letter.
pub const AVAILABILITY_ZONE: &str = "^[a-z]{2,4}(-[a-z]+)?-[a-z]+-[0-9]+[a-z]$";
pub const INSTANCE_TYPE: &str = "^[a-z][a-z0-9-]*\\.[a-z0-9]+$";

/// The regions of every AWS partition, as the SDK's endpoint resolver carries
/// them (aws-sdk-ec2's `partitions.json`; the SDK keeps the list private, so
/// it is copied here, and a test holds the copy to the SDK's).
pub const REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "cn-north-1",
    "cn-northwest-1",
    "eu-central-1",
    "eu-central-2",
    "eu-isoe-west-1",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eusc-de-east-1",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-gov-east-1",
    "us-gov-west-1",
    "us-iso-east-1",
    "us-iso-west-1",
    "us-isob-east-1",
    "us-isob-west-1",
    "us-isof-east-1",
    "us-isof-south-1",
    "us-west-1",
    "us-west-2",
];

/// The instance types the SDK knows (its `InstanceType` values); `None`
/// when bootforge is built without it (`--no-default-features`), where types
/// are checked by their shape only.
pub fn instance_types() -> Option<&'static [&'static str]> {
    #[cfg(feature = "aws")]
    {
        Some(aws_sdk_ec2::types::InstanceType::values())
    }
    #[cfg(not(feature = "aws"))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_region_has_the_regions_shape() {
        let shape = regex::Regex::new(REGION).unwrap();
        let zone = regex::Regex::new(AVAILABILITY_ZONE).unwrap();
        for r in REGIONS {
            assert!(shape.is_match(r), "{r}");
            assert!(zone.is_match(&format!("{r}b")), "{r}b");
        }
    }

    /// The copy of the regions is the SDK's own list, every partition's.
    #[cfg(feature = "aws")]
    #[test]
    fn the_regions_are_the_sdks() {
        let rustc = std::process::Command::new("rustc")
            .arg("-vV")
            .output()
            .unwrap();
        let host = String::from_utf8_lossy(&rustc.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
            .unwrap();
        let out = std::process::Command::new(env!("CARGO"))
            .args([
                "metadata",
                "--format-version",
                "1",
                "--filter-platform",
                &host,
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let manifest = meta["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "aws-sdk-ec2")
            .and_then(|p| p["manifest_path"].as_str())
            .unwrap();
        let source = std::fs::read_to_string(
            std::path::Path::new(manifest).with_file_name("src/endpoint_lib.rs"),
        )
        .unwrap();
        let start = source.find("new_from_json(b\"").unwrap() + "new_from_json(b\"".len();
        let end = start + source[start..].find("\").expect").unwrap();
        let json = source[start..end]
            .replace("\\\\", "\\")
            .replace("\\\"", "\"");
        let partitions: serde_json::Value = serde_json::from_str(&json).unwrap();
        let mut sdk: Vec<String> = partitions["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| p["regions"].as_object().unwrap().keys().cloned())
            .filter(|r| !r.ends_with("-global"))
            .collect();
        sdk.sort();
        let ours: Vec<String> = REGIONS.iter().map(|r| r.to_string()).collect();
        assert_eq!(ours, sdk, "update REGIONS to the SDK's list");
    }

    #[cfg(feature = "aws")]
    #[test]
    fn the_sdk_knows_the_catalogs_types() {
        let known = instance_types().unwrap();
        for t in crate::check::catalog::CATALOG {
            assert!(known.contains(&t.name), "{}", t.name);
        }
        assert!(!known.contains(&"g6e.xlarg"));
    }
}
