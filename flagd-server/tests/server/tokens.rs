//! A token change is committed, and then the database drops before the tokens are read
//! back: the caller still hears that the change was made (a new token's value is shown
//! only in that answer), and the next sync applies it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::http::{Method, StatusCode};
use flagd_server::store::Store;
use serde_json::json;

use crate::api::Api;
use crate::faults::{Faults, Faulty};
use crate::logs::capture_warnings;

#[tokio::test]
async fn a_new_tokens_value_is_shown_even_if_the_database_drops_right_after_its_commit() {
    let (logged, _capturing) = capture_warnings();
    let faults = Arc::new(Faults::default());
    let (api, service) =
        Api::over(|inner| Arc::new(Faulty { inner, faults: Arc::clone(&faults) }) as Arc<dyn Store>).await;
    api.create_flag(json!({"key": "portal"})).await;

    faults.armed.store(true, Ordering::SeqCst);
    let body = json!({"name": "checkout", "role": "evaluate", "environment": "production"});
    let created = api.admin(Method::POST, "/api/v1/tokens", Some(body)).await;
    assert_eq!(faults.failed.load(Ordering::SeqCst), 1, "the token read after the commit failed");
    assert_eq!(created.status, StatusCode::CREATED, "the committed token was answered {}", created.body);
    let value = created.body["value"].as_str().expect("the new token's value is in the answer").to_owned();
    let logged = logged.text();
    assert!(logged.contains("WARN") && logged.contains("cannot reload the tokens after a write"), "{logged}");

    // The sync that replicas run every --sync-interval.
    assert!(service.catch_up().await.unwrap(), "the sync found the token change unapplied");
    let evaluated = api.ofrep(&value, "portal", json!({"companyId": "42"})).await;
    assert_eq!(evaluated.status, StatusCode::OK, "the new token evaluates after the sync: {}", evaluated.body);
}
