//! The calls to EC2, through aws-sdk-ec2: launch what a [`LaunchPlan`]
//! says, find, follow, list and terminate bootforge's instances. Every AWS
//! error becomes one [`Error::Aws`] line saying what to do.
//!
//! Just past 500 lines: the only module that touches the SDK's types, kept
//! whole so that the SDK stays behind one door.

use std::time::Duration;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, HttpTokensState, IamInstanceProfileSpecification,
    InstanceInterruptionBehavior, InstanceMarketOptionsRequest, InstanceMetadataEndpointState,
    InstanceMetadataOptionsRequest, InstanceMetadataTagsState, InstanceType, MarketType,
    ResourceType, ShutdownBehavior, SpotInstanceType, SpotMarketOptions, Tag, TagSpecification,
    VolumeType,
};
use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::retries::classifiers::{
    ClassifyRetry, RetryAction, RetryClassifierPriority,
};
use serde::Serialize;

use crate::aws::plan::{
    LaunchPlan, RunRequest, TAG_ATTEMPT, TAG_DEADLINE, TAG_JOB, TAG_PROFILE, TAG_RUN,
};
use crate::clock::parse_rfc3339;
use crate::diagnostics::{Error, Result};

/// How long a new instance may stay unknown to DescribeInstances: EC2's
/// eventual consistency after RunInstances, as long as both the launch and
/// the wait give it.
pub const VISIBILITY_BOUND: Duration = Duration::from_secs(120);

/// An instance as bootforge shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Instance {
    pub id: String,
    pub state: String,
    pub instance_type: String,
    pub subnet: Option<String>,
    pub private_ip: Option<String>,
    /// Seconds since the epoch.
    pub launched: Option<u64>,
    pub profile: Option<String>,
    pub job: Option<String>,
    pub run: Option<String>,
    /// The attempt of the run (its tag; 1 when an older launch left none).
    pub attempt: Option<String>,
    pub deadline: Option<String>,
    /// Why EC2 changed its state last (`Server.SpotInstanceTermination`…).
    pub state_reason: Option<StateReason>,
}

/// EC2's `StateReason`: why an instance is in its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct StateReason {
    pub code: String,
    pub message: String,
}

impl Instance {
    /// Instance `id` of `claim`'s current attempt as the claim remembers it,
    /// in `state`: when EC2 (or the engine) no longer shows it, or not yet.
    pub fn of_claim(id: &str, claim: &crate::aws::claim::Claim, state: &str) -> Instance {
        Instance {
            id: id.to_string(),
            state: state.to_string(),
            instance_type: claim
                .request_of(id)
                .map(|r| r.instance_type.clone())
                .unwrap_or_default(),
            subnet: None,
            private_ip: None,
            launched: Some(claim.launched_at),
            profile: Some(claim.profile.clone()),
            job: Some(claim.job.clone()),
            run: Some(claim.run.to_string()),
            attempt: Some(claim.attempt.to_string()),
            deadline: None,
            state_reason: None,
        }
    }

    /// When bootforge expects it gone, from its tag.
    pub fn deadline_epoch(&self) -> Option<u64> {
        self.deadline.as_deref().and_then(parse_rfc3339)
    }
}

/// Why a RunInstances request did not start an instance.
#[derive(Debug)]
pub enum RequestError {
    /// No capacity there: try the next subnet or type.
    Capacity(String),
    /// The account's quota: no other request helps now.
    Quota(Error),
    /// The token already launched an instance, which has terminated since:
    /// this run is over.
    InstanceTerminated,
    /// Anything else: stop.
    Fatal(Error),
}

/// What `--dry-run` found.
#[derive(Debug, Clone, Serialize)]
pub struct DryRun {
    pub allowed: bool,
    pub message: String,
}

/// Error codes that mean "not here, not now": another zone or type may work.
const CAPACITY_CODES: &[&str] = &[
    "InsufficientInstanceCapacity",
    "InsufficientHostCapacity",
    "InsufficientCapacity",
    "InsufficientFreeAddressesInSubnet",
    "SpotMaxPriceTooLow",
    "Unsupported",
];

/// Error codes that mean the account's limit: waiting, or a quota increase.
const QUOTA_CODES: &[&str] = &[
    "VcpuLimitExceeded",
    "InstanceLimitExceeded",
    "MaxSpotInstanceCountExceeded",
];

/// Words for the common EC2 errors: what to do about them.
fn advice(code: &str) -> Option<String> {
    let text = match code {
        "UnauthorizedOperation" | "AccessDenied" | "AccessDeniedException" => {
            "the launching host lacks this permission: attach the policy `bootforge iam-policy PROFILE` prints to its role"
        }
        "AuthFailure"
        | "InvalidClientTokenId"
        | "UnrecognizedClientException"
        | "SignatureDoesNotMatch" => {
            "AWS rejects these credentials: check the instance role, AWS_PROFILE or the AWS_* variables"
        }
        "InvalidAMIID.NotFound" | "InvalidAMIID.Malformed" | "InvalidAMIID.Unavailable" => {
            "the AMI does not exist in this region or account: check instance.ami and instance.region"
        }
        "InvalidSubnetID.NotFound" => {
            "the subnet does not exist in this region: check instance.subnets"
        }
        "InvalidGroup.NotFound" | "InvalidSecurityGroupID.NotFound" => {
            "a security group does not exist in the subnet's VPC: check instance.security_groups"
        }
        "InvalidKeyPair.NotFound" => {
            "the key pair does not exist in this region: check instance.key_pair"
        }
        "InvalidParameterValue" | "InvalidParameterCombination" => {
            "EC2 refuses a value of the profile: `bootforge validate` and the message above say which"
        }
        "IdempotentParameterMismatch" => {
            "this run of the job was launched before with other settings (the profile changed since): let it finish or `bootforge terminate --job ID`, then `launch --rerun`"
        }
        "RequestLimitExceeded" | "Throttling" => {
            "EC2 is throttling this account: retry in a minute"
        }
        _ => return None,
    };
    Some(text.to_string())
}

/// One clear line for an SDK error.
fn aws_error<E, R>(operation: &'static str, err: &SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let code = err.code().unwrap_or_default().to_string();
    let message = err.message().map(str::to_string).unwrap_or_else(|| {
        // The SDK's own text runs over several lines with a debug dump: keep
        // the first line's words.
        let full = DisplayErrorContext(err).to_string();
        if full.contains("no credentials found") {
            return "no AWS credentials found (tried the environment, AWS_PROFILE, web identity, ECS and the instance metadata)".to_string();
        }
        let first = full.lines().next().unwrap_or_default();
        first.split(" (").next().unwrap_or(first).trim_end_matches(". Attempted:").to_string()
    });
    let help = advice(&code).or_else(|| match err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            if message.contains("credentials") {
                Some("give the host an instance role, or set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".to_string())
            } else {
                Some("EC2 could not be reached: check the network, the region, and AWS_ENDPOINT_URL if set".to_string())
            }
        }
        _ => None,
    });
    Error::Aws {
        operation,
        code,
        message,
        help,
    }
}

/// Capacity errors are an answer, not a hiccup: EC2 sends some with HTTP
/// 500, which the SDK would retry; the fallback to the next subnet or type
/// is the retry that helps.
#[derive(Debug)]
struct CapacityIsFinal;

impl ClassifyRetry for CapacityIsFinal {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let code = ctx
            .output_or_error()
            .and_then(|r| r.err())
            .and_then(|e| e.as_operation_error())
            .and_then(|e| {
                e.downcast_ref::<aws_sdk_ec2::operation::run_instances::RunInstancesError>()
            })
            .and_then(|e| e.code());
        match code {
            Some(code) if CAPACITY_CODES.contains(&code) => RetryAction::RetryForbidden,
            _ => RetryAction::NoActionIndicated,
        }
    }

    fn name(&self) -> &'static str {
        "bootforge: capacity errors are final"
    }

    fn priority(&self) -> RetryClassifierPriority {
        RetryClassifierPriority::run_after(RetryClassifierPriority::http_status_code_classifier())
    }
}

/// A client for one region, configured the AWS way: the default credential
/// chain, `AWS_PROFILE`, `AWS_ENDPOINT_URL`; standard retries with backoff
/// for throttling and dropped connections.
pub async fn client(region: &str) -> Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()))
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(6))
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_attempt_timeout(Duration::from_secs(30))
                .build(),
        )
        .load()
        .await;
    let config = aws_sdk_ec2::config::Builder::from(&config)
        .retry_classifier(CapacityIsFinal)
        .build();
    Client::from_conf(config)
}

fn tags(plan: &LaunchPlan) -> Vec<Tag> {
    plan.tags
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// One RunInstances call for `request`, or its dry run: the instance as
/// RunInstances describes it (pending), when it started one.
async fn run_instances(
    client: &Client,
    plan: &LaunchPlan,
    request: &RunRequest,
    dry_run: bool,
) -> std::result::Result<
    Option<Instance>,
    SdkError<
        aws_sdk_ec2::operation::run_instances::RunInstancesError,
        aws_sdk_ec2::config::http::HttpResponse,
    >,
> {
    let mut ebs = EbsBlockDevice::builder()
        .volume_type(VolumeType::Gp3)
        .delete_on_termination(true);
    if let Some(gb) = plan.root_volume_gb {
        ebs = ebs.volume_size(i32::try_from(gb).unwrap_or(i32::MAX));
    }
    let tag_spec = |kind: ResourceType| {
        TagSpecification::builder()
            .resource_type(kind)
            .set_tags(Some(tags(plan)))
            .build()
    };
    let mut call = client
        .run_instances()
        .image_id(&plan.ami)
        .instance_type(InstanceType::from(request.instance_type.as_str()))
        .subnet_id(&request.subnet)
        .set_security_group_ids(Some(plan.security_groups.clone()))
        .set_key_name(plan.key_pair.clone())
        .block_device_mappings(
            BlockDeviceMapping::builder()
                .device_name(&plan.root_device)
                .ebs(ebs.build())
                .build(),
        )
        .instance_initiated_shutdown_behavior(ShutdownBehavior::Terminate)
        .metadata_options(
            InstanceMetadataOptionsRequest::builder()
                .http_endpoint(InstanceMetadataEndpointState::Enabled)
                .http_tokens(HttpTokensState::Required)
                .http_put_response_hop_limit(1)
                .instance_metadata_tags(if plan.metadata_tags {
                    InstanceMetadataTagsState::Enabled
                } else {
                    InstanceMetadataTagsState::Disabled
                })
                .build(),
        )
        .tag_specifications(tag_spec(ResourceType::Instance))
        .tag_specifications(tag_spec(ResourceType::Volume))
        .user_data(&plan.user_data)
        .min_count(1)
        .max_count(1)
        .client_token(&request.client_token)
        .dry_run(dry_run);
    if let Some(profile) = &plan.instance_profile {
        call = call.iam_instance_profile(
            IamInstanceProfileSpecification::builder()
                .name(profile)
                .build(),
        );
    }
    if request.spot {
        call = call.instance_market_options(
            InstanceMarketOptionsRequest::builder()
                .market_type(MarketType::Spot)
                .spot_options(
                    SpotMarketOptions::builder()
                        .spot_instance_type(SpotInstanceType::OneTime)
                        .instance_interruption_behavior(InstanceInterruptionBehavior::Terminate)
                        .set_max_price(plan.max_spot_price.map(|p| format!("{p:.4}")))
                        .build(),
                )
                .build(),
        );
    }
    let out = call.send().await?;
    Ok(out
        .instances()
        .first()
        .map(instance)
        .filter(|i| !i.id.is_empty()))
}

/// Sends one request: the instance it started, as RunInstances answers
/// (no DescribeInstances, which may not know it yet); capacity errors are
/// told apart from the rest.
pub async fn launch(
    client: &Client,
    plan: &LaunchPlan,
    request: &RunRequest,
) -> std::result::Result<Instance, RequestError> {
    match run_instances(client, plan, request, false).await {
        Ok(Some(i)) => Ok(i),
        Ok(None) => Err(RequestError::Fatal(Error::Aws {
            operation: "RunInstances",
            code: String::new(),
            message: "EC2 answered without an instance".to_string(),
            help: None,
        })),
        Err(e) if e.code() == Some("IdempotentInstanceTerminated") => {
            Err(RequestError::InstanceTerminated)
        }
        Err(e) if e.code().is_some_and(|c| QUOTA_CODES.contains(&c)) => {
            Err(RequestError::Quota(Error::Quota {
                code: e.code().unwrap_or_default().to_string(),
                message: e.message().unwrap_or_default().to_string(),
            }))
        }
        Err(e) if e.code().is_some_and(|c| CAPACITY_CODES.contains(&c)) => {
            Err(RequestError::Capacity(format!(
                "{}: {}",
                e.code().unwrap_or_default(),
                e.message().unwrap_or_default()
            )))
        }
        Err(e) => Err(RequestError::Fatal(aws_error("RunInstances", &e))),
    }
}

/// Asks EC2 whether the launch would be allowed, without launching.
pub async fn dry_run(client: &Client, plan: &LaunchPlan, request: &RunRequest) -> Result<DryRun> {
    match run_instances(client, plan, request, true).await {
        Err(e) if e.code() == Some("DryRunOperation") => Ok(DryRun {
            allowed: true,
            message: "allowed: RunInstances with this profile would succeed".to_string(),
        }),
        Err(e) if e.code() == Some("UnauthorizedOperation") => Ok(DryRun {
            allowed: false,
            message: format!(
                "denied: {} (attach the policy `bootforge iam-policy {}` prints)",
                e.message().unwrap_or("ec2:RunInstances is not allowed"),
                plan.profile
            ),
        }),
        Err(e) => Err(aws_error("RunInstances (dry run)", &e)),
        Ok(i) => Err(Error::Aws {
            operation: "RunInstances (dry run)",
            code: String::new(),
            message: format!(
                "EC2 launched {} although asked for a dry run; terminate it",
                i.map_or_else(|| "an instance".to_string(), |i| i.id)
            ),
            help: None,
        }),
    }
}

fn instance(i: &aws_sdk_ec2::types::Instance) -> Instance {
    let tag = |key: &str| {
        i.tags()
            .iter()
            .find(|t| t.key() == Some(key))
            .and_then(|t| t.value())
            .map(str::to_string)
    };
    Instance {
        id: i.instance_id().unwrap_or_default().to_string(),
        state: i
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_string())
            .unwrap_or_default(),
        instance_type: i
            .instance_type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        subnet: i.subnet_id().map(str::to_string),
        private_ip: i.private_ip_address().map(str::to_string),
        launched: i.launch_time().and_then(|t| u64::try_from(t.secs()).ok()),
        profile: tag(TAG_PROFILE),
        job: tag(TAG_JOB),
        run: tag(TAG_RUN),
        attempt: tag(TAG_ATTEMPT),
        deadline: tag(TAG_DEADLINE),
        state_reason: i.state_reason().map(|r| StateReason {
            code: r.code().unwrap_or_default().to_string(),
            message: r.message().unwrap_or_default().to_string(),
        }),
    }
}

/// Instances matching `filters` (every page).
pub async fn describe(
    client: &Client,
    filters: Vec<Filter>,
    ids: Vec<String>,
) -> Result<Vec<Instance>> {
    let mut found = Vec::new();
    let mut token = None;
    loop {
        let out = client
            .describe_instances()
            .set_filters((!filters.is_empty()).then(|| filters.clone()))
            .set_instance_ids((!ids.is_empty()).then(|| ids.clone()))
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| aws_error("DescribeInstances", &e))?;
        for r in out.reservations() {
            found.extend(r.instances().iter().map(instance));
        }
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(found);
        }
    }
}

fn filter(name: &str, values: &[&str]) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.iter().map(|v| v.to_string()).collect()))
        .build()
}

const LIVE: &[&str] = &["pending", "running", "stopping", "stopped", "shutting-down"];

/// Every bootforge instance that is not terminated.
pub async fn bootforge_instances(client: &Client) -> Result<Vec<Instance>> {
    describe(
        client,
        vec![
            filter("tag-key", &[TAG_JOB]),
            filter("instance-state-name", LIVE),
        ],
        Vec::new(),
    )
    .await
}

/// Every bootforge instance of the client's region, terminated ones
/// included (EC2 lists those for about an hour; their StateReason says
/// why they ended): what a pass of `advance` asks, once, for all its jobs.
pub async fn every_bootforge_instance(client: &Client) -> Result<Vec<Instance>> {
    describe(client, vec![filter("tag-key", &[TAG_JOB])], Vec::new()).await
}

/// The instances `ids`, asked by a filter: an id EC2 does not know is left
/// out, where naming it in `InstanceIds` fails the whole call.
pub async fn with_ids(client: &Client, ids: &[String]) -> Result<Vec<Instance>> {
    let mut found = Vec::new();
    // EC2 takes up to 200 values in a filter.
    for chunk in ids.chunks(200) {
        let values: Vec<&str> = chunk.iter().map(String::as_str).collect();
        found.extend(describe(client, vec![filter("instance-id", &values)], Vec::new()).await?);
    }
    Ok(found)
}

/// The live instance of `profile`'s job `job`, if one was launched.
pub async fn find_job(client: &Client, profile: Option<&str>, job: &str) -> Result<Vec<Instance>> {
    let mut filters = vec![
        filter(&format!("tag:{TAG_JOB}"), &[job]),
        filter("instance-state-name", LIVE),
    ];
    if let Some(profile) = profile {
        filters.push(filter(&format!("tag:{TAG_PROFILE}"), &[profile]));
    }
    describe(client, filters, Vec::new()).await
}

/// Whether an error may pass if the call is made again later: throttling,
/// EC2's own failures, the network.
pub fn transient(e: &Error) -> bool {
    match e {
        Error::Aws { code, .. } => matches!(
            code.as_str(),
            "" | "RequestLimitExceeded"
                | "Throttling"
                | "ThrottlingException"
                | "InternalError"
                | "InternalFailure"
                | "Unavailable"
                | "ServiceUnavailable"
        ),
        _ => false,
    }
}

/// One instance by id; `None` while EC2 does not know it yet (eventual
/// consistency: a new instance may be unknown for a while after
/// RunInstances), or no longer.
pub async fn get(client: &Client, id: &str) -> Result<Option<Instance>> {
    match describe(client, Vec::new(), vec![id.to_string()]).await {
        Ok(found) => Ok(found.into_iter().next()),
        Err(Error::Aws { code, .. }) if code == "InvalidInstanceID.NotFound" => Ok(None),
        Err(e) => Err(e),
    }
}

/// The instances of attempt `attempt` of `job`'s run `run`, whatever their
/// state.
pub async fn find_run(client: &Client, job: &str, run: u32, attempt: u32) -> Result<Vec<Instance>> {
    let found = describe(
        client,
        vec![
            filter(&format!("tag:{TAG_JOB}"), &[job]),
            filter(&format!("tag:{TAG_RUN}"), &[&run.to_string()]),
        ],
        Vec::new(),
    )
    .await?;
    let wanted = attempt.to_string();
    Ok(found
        .into_iter()
        .filter(|i| i.attempt.as_deref().unwrap_or("1") == wanted)
        .collect())
}

/// The instance's console output (the last 64 KB EC2 keeps), decoded.
pub async fn console_output(client: &Client, id: &str) -> Result<String> {
    let out = client
        .get_console_output()
        .instance_id(id)
        .send()
        .await
        .map_err(|e| aws_error("GetConsoleOutput", &e))?;
    use base64::Engine as _;
    Ok(out
        .output()
        .and_then(|o| base64::engine::general_purpose::STANDARD.decode(o).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default())
}

/// The latest Linux/UNIX spot price of each of `types` in each zone of the
/// client's region (only `zone` when given), as DescribeSpotPriceHistory
/// gives it with a start time of now.
pub async fn spot_prices(
    client: &Client,
    types: &[String],
    zone: Option<&str>,
) -> Result<Vec<crate::aws::cost::SpotQuote>> {
    let out = client
        .describe_spot_price_history()
        .set_instance_types(Some(
            types
                .iter()
                .map(|t| InstanceType::from(t.as_str()))
                .collect(),
        ))
        .product_descriptions("Linux/UNIX")
        .set_availability_zone(zone.map(str::to_string))
        .start_time(aws_sdk_ec2::primitives::DateTime::from_secs(
            i64::try_from(crate::clock::now()).unwrap_or(i64::MAX),
        ))
        .send()
        .await
        .map_err(|e| aws_error("DescribeSpotPriceHistory", &e))?;
    Ok(out
        .spot_price_history()
        .iter()
        .filter_map(|h| {
            Some(crate::aws::cost::SpotQuote {
                instance_type: h.instance_type()?.as_str().to_string(),
                zone: h.availability_zone()?.to_string(),
                price_per_hour: h.spot_price()?.parse().ok()?,
                since: h
                    .timestamp()
                    .and_then(|t| u64::try_from(t.secs()).ok())
                    .map(crate::clock::rfc3339),
            })
        })
        .collect())
}

/// Terminates `ids`.
pub async fn terminate(client: &Client, ids: &[String]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    client
        .terminate_instances()
        .set_instance_ids(Some(ids.to_vec()))
        .send()
        .await
        .map_err(|e| aws_error("TerminateInstances", &e))?;
    Ok(())
}
