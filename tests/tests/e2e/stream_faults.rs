//! An in-process client whose link breaks its change stream, through a proxy in front of
//! the real server: a stream dropped as soon as it opens is reopened ever more slowly, not
//! 20 times a second for ever, and a stream that is accepted and never answered costs the
//! client one request timeout, after which the changes it missed arrive.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use flagd_client::{ClientOptions, InProcessClient};
use flagd_tests::{Proxy, Route, Server};

use crate::client::{FLAG, ctx, eventually, runtime, set_up, toggle};

/// The request line of the change stream (flagd-client's in-process mode).
const STREAM: &str = "GET /api/v1/stream";

/// flagd-client's first reconnection pause, which doubles at each attempt.
const MIN_BACKOFF: Duration = Duration::from_millis(50);

#[test]
fn a_stream_dropped_as_soon_as_it_opens_is_reopened_ever_more_slowly() {
    let server = Server::start().unwrap();
    let token = set_up(&server);
    let proxy =
        Proxy::http(
            server.address(),
            |line| {
                if line.starts_with(STREAM) { Route::FirstEventOnly } else { Route::Forward }
            },
        )
        .unwrap();
    let max_backoff = Duration::from_secs(2);
    let rt = runtime();
    let options = ClientOptions::new(proxy.url(), &token).max_backoff(max_backoff);
    let client = rt.block_on(InProcessClient::connect(&options)).unwrap();

    // Each opening delivers its first event, so it succeeds, and the stream dies at once.
    // The proxy notes an opening before it cuts it, and the client pauses only after that
    // cut, so the gap between two openings is longer than the pause between them: 50 ms,
    // then twice as long each time up to `max_backoff`. 3.15 s from the first to the
    // seventh; a backoff reset at every opening makes it 0.3 s.
    const OPENINGS: usize = 7;
    assert!(
        eventually(Duration::from_secs(30), || proxy.requests(STREAM).len() >= OPENINGS),
        "the stream was opened {} times in 30 s",
        proxy.requests(STREAM).len()
    );
    let openings = proxy.requests(STREAM);
    let gaps: Vec<Duration> = openings.windows(2).take(OPENINGS - 1).map(|w| w[1] - w[0]).collect();
    let pauses: Vec<Duration> =
        (0..OPENINGS - 1).map(|n| (MIN_BACKOFF * 2_u32.pow(u32::try_from(n).unwrap())).min(max_backoff)).collect();
    assert!(
        gaps.iter().zip(&pauses).all(|(gap, pause)| gap > pause),
        "the stream was reopened sooner than the backoff allows:\n  gaps   {gaps:?}\n  pauses {pauses:?}"
    );
    assert!(client.bool_value(FLAG, &ctx(), false), "the snapshot is served meanwhile");
}

#[test]
fn a_stream_accepted_and_never_answered_costs_one_timeout_then_changes_arrive() {
    let server = Server::start().unwrap();
    let token = set_up(&server);
    // The first stream dies at once, so that the client reconnects; the second is accepted
    // and never answered; the ones after it reach the server.
    let streams = AtomicUsize::new(0);
    let proxy = Proxy::http(server.address(), move |line| {
        if !line.starts_with(STREAM) {
            return Route::Forward;
        }
        match streams.fetch_add(1, Ordering::Relaxed) {
            0 => Route::FirstEventOnly,
            1 => Route::BlackHole,
            _ => Route::Forward,
        }
    })
    .unwrap();
    let timeout = Duration::from_millis(500);
    let max_backoff = Duration::from_millis(200);
    let rt = runtime();
    let options = ClientOptions::new(proxy.url(), &token).timeout(timeout).max_backoff(max_backoff);
    let client = rt.block_on(InProcessClient::connect(&options)).unwrap();
    assert!(
        eventually(Duration::from_secs(10), || proxy.requests(STREAM).len() >= 2),
        "the client did not reopen its stream after it was cut"
    );

    // Made while the client waits on the unanswered stream: only a later one brings it.
    let off = toggle(&server.admin(), false);
    // The timeout, a pause and a snapshot take about a second; waiting on the unanswered
    // stream never ends.
    let within = timeout + max_backoff + Duration::from_secs(5);
    assert!(
        rt.block_on(client.wait_for_seq(off, within)),
        "the kill switch did not reach the client within {within:?} (stream openings: {})",
        proxy.requests(STREAM).len()
    );
    assert!(!client.bool_value(FLAG, &ctx(), true));
}
