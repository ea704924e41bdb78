//! What the server's log says about the answers it gives: an operator alerted on ERROR
//! hears of its own faults, not of conditions every answer already reports.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use axum::http::{Method, StatusCode};
use flagd_server::store::Store;
use serde_json::json;

use crate::api::{Api, admin_get};
use crate::faults::{Faults, Faulty};

/// What was logged at WARN and above while its guard lived.
pub(crate) struct Logged(Arc<Mutex<Vec<u8>>>);

impl Logged {
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// The level of the line that logged an answer of `status`, if one did.
    fn level_of_answer(&self, status: StatusCode) -> Option<String> {
        let marker = format!("status={}", status.as_u16());
        let text = self.text();
        let line = text.lines().find(|l| l.contains("response failed") && l.contains(&marker))?;
        ["ERROR", "WARN"].into_iter().find(|level| line.contains(level)).map(str::to_owned)
    }
}

/// Captures what is logged at WARN and above on this thread (a current-thread test runtime
/// runs every task here) while the guard lives.
pub(crate) fn capture_warnings() -> (Logged, tracing::subscriber::DefaultGuard) {
    let logged = Arc::new(Mutex::new(Vec::new()));
    let writer = Arc::clone(&logged);
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || Captured(Arc::clone(&writer)))
        .finish();
    (Logged(logged), tracing::subscriber::set_default(subscriber))
}

struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_500_is_logged_as_an_error_and_the_5xx_the_server_answers_on_purpose_as_warnings() {
    let (logged, _capturing) = capture_warnings();
    let faults = Arc::new(Faults::default());
    let (api, _) = Api::over(|inner| Arc::new(Faulty { inner, faults: Arc::clone(&faults) }) as Arc<dyn Store>).await;

    faults.broken.store(true, Ordering::SeqCst);
    let r = api.admin(Method::GET, "/api/v1/tokens", None).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (StatusCode::INTERNAL_SERVER_ERROR, Some("INTERNAL")));

    faults.failing.store(true, Ordering::SeqCst);
    let r = api.admin(Method::GET, "/api/v1/tokens", None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);

    // A server that does not follow the others never applies the next write: a wait for it
    // runs out.
    api.create_flag(json!({"key": "portal"})).await;
    let behind = api.fresh_server().await;
    let on = api.admin(Method::POST, "/api/v1/flags/portal/environments/production/enable", None).await;
    let seq = on.body["version"].as_i64().unwrap();
    let r = admin_get(behind, &format!("/api/v1/wait?seq={seq}&timeoutMs=50")).await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "{}", r.body);

    let levels = [StatusCode::INTERNAL_SERVER_ERROR, StatusCode::SERVICE_UNAVAILABLE, StatusCode::GATEWAY_TIMEOUT]
        .map(|status| logged.level_of_answer(status));
    let expected = [Some("ERROR"), Some("WARN"), Some("WARN")].map(|level| level.map(str::to_owned));
    assert_eq!(levels, expected, "500, 503 and 504 logged at\n{}", logged.text());
}
