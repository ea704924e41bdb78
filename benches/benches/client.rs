//! flagd-client's evaluation cost per call, each mode next to its baseline in the same
//! run: in-process against calling flagd-core directly on the same flags, remote with its
//! cache against a remote call without one. A flagd-server runs inside the bench process
//! (SQLite in a temporary directory) with the single-flag fixtures imported into
//! `production`. See README.md ("Client evaluation").

// Set-up failures are bugs in the benchmark; aborting with the reason is the right response.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use flagd_benches::{context, keys, single_flag_ruleset, single_flag_source};
use flagd_client::{ClientOptions, InProcessClient, RemoteClient};
use serde_json::{Value, json};

const ADMIN: &str = "bench-admin-token";

/// A server on a loopback port with the fixtures in production; returns its URL and an
/// evaluate token.
async fn server(dir: &std::path::Path) -> (String, String) {
    let store = flagd_server::store::connect(&format!("sqlite:{}", dir.join("flagd.db").display())).await.unwrap();
    let (service, _) = flagd_server::service::Service::start(store, Some(ADMIN)).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let options = flagd_server::HttpOptions::default();
    tokio::spawn(async move { flagd_server::run(listener, service, &options, std::future::pending()).await });

    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| http.post(format!("{url}{path}")).bearer_auth(ADMIN).json(&body).send();
    let imported = post("/api/v1/environments/production/import?mode=replace", single_flag_source()).await.unwrap();
    assert!(imported.status().is_success(), "{:?}", imported.text().await);
    let token = post("/api/v1/tokens", json!({"name": "bench", "role": "evaluate", "environment": "production"}));
    let token: Value = token.await.unwrap().json().await.unwrap();
    (url, token["value"].as_str().unwrap().to_owned())
}

fn client(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = std::env::temp_dir().join(format!("flagd-bench-client-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (url, token) = rt.block_on(server(&dir));
    let options = ClientOptions::new(&url, &token).cache_ttl(Duration::from_secs(3600));
    let in_process = rt.block_on(InProcessClient::connect(&options)).unwrap();
    let remote = RemoteClient::new(&options).unwrap();
    let uncached = RemoteClient::new(&options.clone().cache_ttl(Duration::ZERO)).unwrap();
    let direct = single_flag_ruleset().unwrap();
    let ctx = context();

    let mut group = c.benchmark_group("client");
    for (name, key) in [("static_boolean", keys::STATIC_BOOLEAN), ("rollout_50", keys::ROLLOUT_50)] {
        // Both paths must give the same answer, or the comparison means nothing.
        let expected = direct.boolean(key, &ctx).value.unwrap();
        assert_eq!(in_process.bool_value(key, &ctx, !expected), expected);
        assert_eq!(rt.block_on(remote.bool_value(key, &ctx, !expected)), expected);

        group.bench_function(format!("core_direct/{name}"), |b| {
            b.iter(|| direct.boolean(black_box(key), black_box(&ctx)).value)
        });
        group.bench_function(format!("in_process/{name}"), |b| {
            b.iter(|| in_process.bool_value(black_box(key), black_box(&ctx), false))
        });
        group.bench_function(format!("remote_cached/{name}"), |b| {
            b.to_async(&rt).iter(|| remote.bool_value(black_box(key), black_box(&ctx), false))
        });
        group.bench_function(format!("remote_uncached/{name}"), |b| {
            b.to_async(&rt).iter(|| uncached.bool_value(black_box(key), black_box(&ctx), false))
        });
    }
    group.finish();
    drop(in_process);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = client
}
criterion_main!(benches);
