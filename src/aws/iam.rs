//! `iam-policy PROFILE`: the least-privilege policy of the launching host,
//! scoped to the profile's resources and tags.

use serde_json::{Value as Json, json};

use crate::aws::plan::TAG_PROFILE;
use crate::compile::model::Profile;

/// `iam-policy PROFILE`: what the launching host needs, and no more.
pub fn iam_policy(name: &str, profile: &Profile) -> Json {
    let i = &profile.instance;
    let region = &i.region;
    let account = i.account.clone().unwrap_or_else(|| "*".to_string());
    let arn = |kind: &str, id: &str| format!("arn:aws:ec2:{region}:{account}:{kind}/{id}");
    let mut launch_on = vec![format!("arn:aws:ec2:{region}::image/{}", i.ami)];
    launch_on.extend(i.subnets.iter().map(|s| arn("subnet", s)));
    launch_on.extend(i.security_groups.iter().map(|s| arn("security-group", s)));
    if let Some(key) = &i.key_pair {
        launch_on.push(arn("key-pair", key));
    }
    // Every resource RunInstances creates; the network interface comes from
    // the subnet above and takes no tags.
    let mut created = vec![
        arn("instance", "*"),
        arn("volume", "*"),
        arn("network-interface", "*"),
    ];
    let mut untagged = vec![arn("network-interface", "*")];
    if i.market.uses_spot() {
        created.push(arn("spot-instances-request", "*"));
        untagged.push(arn("spot-instances-request", "*"));
    }
    let tag_keys: Vec<String> = ["Name", "bootforge:*"]
        .into_iter()
        .map(str::to_string)
        .chain(i.tags.keys().cloned())
        .collect();
    let request_tag = format!("aws:RequestTag/{TAG_PROFILE}");
    let mut statements = vec![
        json!({
            "Sid": "LaunchFromTheProfilesResources",
            "Effect": "Allow",
            "Action": "ec2:RunInstances",
            "Resource": launch_on,
        }),
        json!({
            "Sid": "CreateOnlyTheProfilesInstances",
            "Effect": "Allow",
            "Action": "ec2:RunInstances",
            "Resource": arn("instance", "*"),
            "Condition": {
                "StringEquals": {
                    &request_tag: name,
                    "ec2:InstanceType": i.types,
                    "ec2:MetadataHttpTokens": "required",
                },
                "ForAllValues:StringLike": {"aws:TagKeys": tag_keys},
            },
        }),
        json!({
            "Sid": "CreateOnlyVolumesTaggedAtLaunch",
            "Effect": "Allow",
            "Action": "ec2:RunInstances",
            "Resource": arn("volume", "*"),
            "Condition": {"StringEquals": {&request_tag: name}},
        }),
        json!({
            "Sid": "CreateTheNetworkInterfaceInTheSubnetAbove",
            "Effect": "Allow",
            "Action": "ec2:RunInstances",
            "Resource": untagged,
        }),
        json!({
            "Sid": "TagOnlyWhileLaunching",
            "Effect": "Allow",
            "Action": "ec2:CreateTags",
            "Resource": created,
            "Condition": {"StringEquals": {"ec2:CreateAction": "RunInstances"}},
        }),
        json!({
            "Sid": "TerminateOnlyTheProfilesInstances",
            "Effect": "Allow",
            "Action": "ec2:TerminateInstances",
            "Resource": arn("instance", "*"),
            "Condition": {"StringEquals": {format!("aws:ResourceTag/{TAG_PROFILE}"): name}},
        }),
        json!({
            "Sid": "ReadTheConsoleOfOnlyTheProfilesInstances",
            "Effect": "Allow",
            "Action": "ec2:GetConsoleOutput",
            "Resource": arn("instance", "*"),
            "Condition": {"StringEquals": {format!("aws:ResourceTag/{TAG_PROFILE}"): name}},
        }),
        json!({
            "Sid": "DescribeCannotBeScoped",
            "Effect": "Allow",
            "Action": ["ec2:DescribeInstances", "ec2:DescribeInstanceStatus"],
            "Resource": "*",
        }),
    ];
    if i.market.uses_spot() {
        // `cost` reads today's spot price; the action has no resource to
        // scope it to.
        statements.push(json!({
            "Sid": "ReadSpotPrices",
            "Effect": "Allow",
            "Action": "ec2:DescribeSpotPriceHistory",
            "Resource": "*",
        }));
    }
    if let Some(role) = &i.instance_role {
        let resource = if role.starts_with("arn:") {
            role.clone()
        } else {
            format!("arn:aws:iam::{account}:role/{role}")
        };
        statements.push(json!({
            "Sid": "PassOnlyTheInstanceRole",
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": resource,
            "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}},
        }));
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}
