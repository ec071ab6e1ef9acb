//! The EC2 double itself, held to what AWS documents ("Ensuring idempotency
//! in Amazon EC2 API requests", "Eventual consistency in the Amazon EC2
//! API", the RunInstances and StateReason references): a launcher test can
//! only be as good as the world it runs in.

use std::time::Duration;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::ProvideErrorMetadata as _;
use aws_sdk_ec2::types::{Filter, InstanceType, ResourceType, Tag, TagSpecification};

use crate::launch::{World, client_for};
use crate::proxy::{Faults, Proxy};

/// A double in front of a fresh emulated account, and a client that sees
/// each answer as EC2 gives it (no SDK retries).
fn double(faults: Faults) -> Option<(World, Proxy, Client)> {
    let w = World::new()?;
    let proxy = Proxy::start(&w.moto.address, faults);
    let client = client_for(&w.rt, &proxy.url);
    Some((w, proxy, client))
}

/// RunInstances of `itype` in the first subnet under `token`: the
/// instance id, or the error code.
async fn run(w: &World, client: &Client, token: &str, itype: &str) -> Result<String, String> {
    client
        .run_instances()
        .image_id(&w.ami)
        .instance_type(InstanceType::from(itype))
        .subnet_id(&w.subnets[0])
        .min_count(1)
        .max_count(1)
        .client_token(token)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Instance)
                .tags(Tag::builder().key("bootforge:job").value(token).build())
                .build(),
        )
        .send()
        .await
        .map(|o| o.instances()[0].instance_id().unwrap().to_string())
        .map_err(|e| e.code().unwrap_or("no code").to_string())
}

fn moto_instances(w: &World) -> usize {
    w.rt.block_on(async {
        w.client
            .describe_instances()
            .send()
            .await
            .unwrap()
            .reservations()
            .iter()
            .map(|r| r.instances().len())
            .sum()
    })
}

#[test]
fn the_same_token_and_request_give_the_same_instance_also_in_flight() {
    let Some((w, proxy, client)) = double(Faults {
        run_delay: Duration::from_millis(500),
        ..Faults::default()
    }) else {
        return;
    };
    let (a, b) = w.rt.block_on(async {
        tokio::join!(
            run(&w, &client, "token-1", "g6e.xlarge"),
            run(&w, &client, "token-1", "g6e.xlarge")
        )
    });
    assert_eq!(a, b);
    let again = w.rt.block_on(run(&w, &client, "token-1", "g6e.xlarge"));
    assert_eq!(again, a);
    assert_eq!(moto_instances(&w), 1, "one instance for one token");
    assert_eq!(proxy.count("RunInstances"), 3);
}

#[test]
fn the_same_token_with_another_request_is_a_mismatch_even_after_a_failure() {
    let Some((w, _proxy, client)) = double(Faults {
        capacity_first: 1,
        ..Faults::default()
    }) else {
        return;
    };
    w.rt.block_on(async {
        // The first attempt fails for capacity; the token is remembered with it.
        assert_eq!(
            run(&w, &client, "token-2", "g6e.xlarge").await,
            Err("InsufficientInstanceCapacity".to_string())
        );
        assert_eq!(
            run(&w, &client, "token-2", "g6e.2xlarge").await,
            Err("IdempotentParameterMismatch".to_string())
        );
        // The same request again is evaluated again.
        let id = run(&w, &client, "token-2", "g6e.xlarge").await.unwrap();
        assert_eq!(
            run(&w, &client, "token-2", "g6.xlarge").await,
            Err("IdempotentParameterMismatch".to_string())
        );
        assert_eq!(run(&w, &client, "token-2", "g6e.xlarge").await, Ok(id));
    });
}

#[test]
fn a_token_whose_instance_terminated_answers_instance_terminated() {
    let Some((w, _proxy, client)) = double(Faults::default()) else {
        return;
    };
    w.rt.block_on(async {
        let id = run(&w, &client, "token-3", "g6e.xlarge").await.unwrap();
        client
            .terminate_instances()
            .instance_ids(&id)
            .send()
            .await
            .unwrap();
        assert_eq!(
            run(&w, &client, "token-3", "g6e.xlarge").await,
            Err("IdempotentInstanceTerminated".to_string())
        );
    });
    assert_eq!(moto_instances(&w), 1, "nothing launched again");
}

#[test]
fn a_new_instance_is_unknown_for_the_consistency_window() {
    let Some((w, _proxy, client)) = double(Faults {
        hide_for: Duration::from_secs(2),
        ..Faults::default()
    }) else {
        return;
    };
    w.rt.block_on(async {
        let id = run(&w, &client, "token-4", "g6e.xlarge").await.unwrap();
        let by_id = client.describe_instances().instance_ids(&id).send().await;
        assert_eq!(
            by_id.unwrap_err().code(),
            Some("InvalidInstanceID.NotFound")
        );
        let by_tag = client
            .describe_instances()
            .filters(
                Filter::builder()
                    .name("tag:bootforge:job")
                    .values("token-4")
                    .build(),
            )
            .send()
            .await
            .unwrap();
        assert!(by_tag.reservations().is_empty(), "tag filters lag too");
        tokio::time::sleep(Duration::from_millis(2200)).await;
        let by_id = client
            .describe_instances()
            .instance_ids(&id)
            .send()
            .await
            .unwrap();
        assert_eq!(
            by_id.reservations()[0].instances()[0].instance_id(),
            Some(id.as_str())
        );
    });
}

#[test]
fn an_instance_ended_by_ec2_carries_its_state_reason_and_console() {
    let Some((w, proxy, client)) = double(Faults::default()) else {
        return;
    };
    w.rt.block_on(async {
        let id = run(&w, &client, "token-5", "g6e.xlarge").await.unwrap();
        proxy.set_console(&id, "boot\nbootforge-status: {\"outcome\": \"failed\"}\n");
        proxy.end(
            &id,
            "Server.SpotInstanceTermination",
            "Server.SpotInstanceTermination: Spot instance termination",
        );
        let out = client
            .describe_instances()
            .instance_ids(&id)
            .send()
            .await
            .unwrap();
        let i = &out.reservations()[0].instances()[0];
        assert_eq!(i.state().unwrap().name().unwrap().as_str(), "terminated");
        assert_eq!(
            i.state_reason().unwrap().code(),
            Some("Server.SpotInstanceTermination")
        );
        let console = client
            .get_console_output()
            .instance_id(&id)
            .send()
            .await
            .unwrap();
        use base64::Engine as _;
        let text = base64::engine::general_purpose::STANDARD
            .decode(console.output().unwrap())
            .unwrap();
        assert!(
            String::from_utf8(text)
                .unwrap()
                .contains("bootforge-status: ")
        );
    });
}

#[test]
fn quotas_are_not_capacity() {
    let Some((w, _proxy, client)) = double(Faults {
        quota: Some("VcpuLimitExceeded"),
        ..Faults::default()
    }) else {
        return;
    };
    assert_eq!(
        w.rt.block_on(run(&w, &client, "token-6", "g6e.xlarge")),
        Err("VcpuLimitExceeded".to_string())
    );
    assert_eq!(moto_instances(&w), 0);
}

#[test]
fn without_token_protection_every_call_launches() {
    let Some((w, _proxy, client)) = double(Faults {
        no_token_protection: true,
        ..Faults::default()
    }) else {
        return;
    };
    let (a, b) = w.rt.block_on(async {
        (
            run(&w, &client, "token-7", "g6e.xlarge").await,
            run(&w, &client, "token-7", "g6e.xlarge").await,
        )
    });
    assert_ne!(a, b);
    assert_eq!(moto_instances(&w), 2);
}

#[test]
fn a_denied_instance_fails_the_whole_terminate_call() {
    let Some((w, _proxy, client)) = double(Faults {
        deny_terminate_profile: Some("denied".to_string()),
        ..Faults::default()
    }) else {
        return;
    };
    w.rt.block_on(async {
        let allowed = run(&w, &client, "token-8", "g6e.xlarge").await.unwrap();
        let denied = run(&w, &client, "token-9", "g6e.xlarge").await.unwrap();
        w.client
            .create_tags()
            .resources(&denied)
            .tags(
                Tag::builder()
                    .key("bootforge:profile")
                    .value("denied")
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let both = client
            .terminate_instances()
            .instance_ids(&allowed)
            .instance_ids(&denied)
            .send()
            .await;
        assert_eq!(both.unwrap_err().code(), Some("UnauthorizedOperation"));
        let state = |id: String| {
            let w = &w;
            async move {
                w.client
                    .describe_instances()
                    .instance_ids(id)
                    .send()
                    .await
                    .unwrap()
                    .reservations()[0]
                    .instances()[0]
                    .state()
                    .unwrap()
                    .name()
                    .unwrap()
                    .as_str()
                    .to_string()
            }
        };
        assert_eq!(
            state(allowed.clone()).await,
            "running",
            "none of the call's instances is terminated"
        );
        client
            .terminate_instances()
            .instance_ids(&allowed)
            .send()
            .await
            .unwrap();
        assert_eq!(state(allowed).await, "terminated");
    });
}

#[test]
fn a_new_instance_is_pending_before_it_runs() {
    let Some((w, proxy, client)) = double(Faults {
        pending_for: Duration::from_secs(2),
        ..Faults::default()
    }) else {
        return;
    };
    let state = |id: &str| {
        w.rt.block_on(async {
            client
                .describe_instances()
                .instance_ids(id)
                .send()
                .await
                .unwrap()
                .reservations()[0]
                .instances()[0]
                .state()
                .unwrap()
                .name()
                .unwrap()
                .as_str()
                .to_string()
        })
    };
    let id =
        w.rt.block_on(run(&w, &client, "token-10", "g6e.xlarge"))
            .unwrap();
    assert_eq!(state(&id), "pending");
    let booted = proxy.booted();
    assert_eq!(booted.len(), 1);
    std::thread::sleep(Duration::from_millis(2200));
    assert_eq!(state(&id), "running");
    assert!(booted[0].1 <= std::time::Instant::now());
    proxy.power_off(&id);
    assert_eq!(state(&id), "terminated");
    assert!(
        proxy.booted().is_empty(),
        "an instance EC2 ended is not booted"
    );
}
