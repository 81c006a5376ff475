//! The HTTP API as a whole: any request (method, path, query, headers, body) to the
//! daemon's router over a store and status that have run forty control passes. Never
//! a panic or a 500 (the store is healthy, so a 500 is a handler failing on its input),
//! and every refusal says what is wrong: a 4xx answer has a body.
//!
//! The input is a request as text: `METHOD URI`, then `Name: value` header lines, a
//! blank line, and the body (bytes). A leading `!` sends it to a second router over the
//! same store whose reads and writes take a token (`s3cret`), so the `Authorization`
//! header (Bearer, and Basic with the token as the password) is read from any bytes.
#![no_main]
use std::sync::OnceLock;

use axum::body::Body;
use axum::http::Request;
use libfuzzer_sys::fuzz_target;
use prescale_core::config::Config;
use prescale_core::{Sample, SeriesKey};
use prescale_orchestrate::{Engine, SimCloud};
use prescale_server::AppState;
use prescale_store::{Durability, Store};
use tower::ServiceExt;

struct Fixture {
    _dir: tempfile::TempDir,
    /// On loopback without a token.
    app: axum::Router,
    /// Every request but /healthz takes the token.
    guarded: axum::Router,
    rt: tokio::runtime::Runtime,
}

/// A store and engine that have run 40 one-minute passes on a sawtooth demand, as the
/// server's own tests build them; at most 2,000 series, so writes cannot grow it
/// without bound over a long run.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::default();
        c.storage.max_series = 2_000;
        let store = Store::open(dir.path(), Durability::Buffered).unwrap();
        store.set_max_series(c.storage.max_series);
        let key = SeriesKey::parse(r#"host_cpu_usage_cores{mode="busy"}"#).unwrap();
        let mut e = Engine::from_config(&c, 0, store.clone(), SimCloud::new(&c.tiers, 1));
        e.set_inline_training();
        let t0 = 1_800_000_000_000i64;
        for m in 0..40i64 {
            let t = t0 + m * 60_000;
            let s = Sample::new(t, 4.0 + (m % 10) as f64).unwrap();
            store.append(&key, &[s]).unwrap();
            e.tick(t + 1).unwrap();
        }
        let st = AppState::new(&c, store.clone(), e.status_handle()).unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret\n").unwrap();
        let mut g = c.clone();
        g.server.token_file = Some(token);
        g.server.token_for_reads = true;
        let guarded = AppState::new(&g, store, e.status_handle()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Fixture {
            _dir: dir,
            app: prescale_server::router(st),
            guarded: prescale_server::router(guarded),
            rt,
        }
    })
}

/// The request `data` spells, or `None` where it is not one (no valid method, URI or
/// header: the HTTP parser in front of the router refuses those).
fn request(data: &[u8]) -> Option<Request<Body>> {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.split('\n');
    let (method, uri) = lines.next()?.split_once(' ')?;
    let mut b = Request::builder().method(method).uri(uri);
    for line in lines {
        let (k, v) = line.split_once(':')?;
        b = b.header(k.trim(), v.trim());
    }
    b.body(Body::from(body.to_vec())).ok()
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let (app, data) = match data.strip_prefix(b"!") {
        Some(rest) => (&f.guarded, rest),
        None => (&f.app, data),
    };
    let Some(req) = request(data) else {
        return;
    };
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let (code, body) = f.rt.block_on(async {
        let resp = app.clone().oneshot(req).await.unwrap();
        let code = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 64 << 20)
            .await
            .unwrap();
        (code, body)
    });
    // `HTTP_FUZZ_DEBUG=1 target/.../http FILE` shows what an input was answered.
    if std::env::var_os("HTTP_FUZZ_DEBUG").is_some() {
        eprintln!(
            "{method} {uri}: {code}: {}",
            String::from_utf8_lossy(&body)
                .chars()
                .take(150)
                .collect::<String>()
        );
    }
    assert!(
        !code.is_server_error() || code.as_u16() == 503,
        "{method} {uri}: {code}: {}",
        String::from_utf8_lossy(&body)
    );
    assert!(
        !code.is_client_error() || !body.is_empty(),
        "{method} {uri}: {code} with an empty body: a refusal should say what to fix"
    );
});
