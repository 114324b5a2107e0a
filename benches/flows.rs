//! Flow pipeline benchmarks (plain `fn main`, prints figures):
//!
//! (a) decode → filter → compact format of the real fixture flows (converted to protobuf bytes),
//!     one core: flows/s and heap allocations per flow (counting global allocator);
//! (b) simulated relay → tonic client streaming over loopback: flows/s.
//!
//! Run: `cargo bench --bench flows` (optionally `-- a` or `-- b` for one part).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cutover::hubble::filter::{CompiledRequest, FilterBuilder};
use cutover::hubble::format::{FormatOptions, write_compact};
use cutover::hubble::proto::observer::{GetFlowsRequest, GetFlowsResponse, get_flows_response::ResponseTypes};
use prost::Message;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.load(Ordering::Relaxed)
}

fn fixture_bytes() -> Vec<Vec<u8>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hubble");
    let mut out = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(dir).expect("fixtures").flatten().map(|e| e.path()).collect();
    names.sort();
    for p in names.into_iter().filter(|p| p.extension().is_some_and(|e| e == "jsonl")) {
        let text = std::fs::read_to_string(&p).expect("fixture");
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let resp: GetFlowsResponse = serde_json::from_str(line).expect("fixture line");
            out.push(resp.encode_to_vec());
        }
    }
    out
}

fn bench_pipeline() {
    let bytes = fixture_bytes();
    let total_bytes: usize = bytes.iter().map(Vec::len).sum();
    // A typical cockpit filter: one namespace (source or destination), hide host traffic.
    let mut b = FilterBuilder::new();
    b.set("namespace", "bookinfo").expect("filter");
    b.set("verdict", "FORWARDED").expect("filter");
    b.not().expect("not");
    b.set("label", "reserved:host").expect("filter");
    let (wl, bl) = b.build().expect("filter");
    let filter = CompiledRequest::new(&wl, &bl).expect("compile");
    let opts = FormatOptions::default();
    let mut line: Vec<u8> = Vec::with_capacity(512);
    let decoded: Vec<GetFlowsResponse> =
        bytes.iter().map(|b| GetFlowsResponse::decode(b.as_slice()).expect("decode")).collect();

    // Warm up.
    for b in &bytes {
        let r = GetFlowsResponse::decode(b.as_slice()).expect("decode");
        black_box(r);
    }
    for r in &decoded {
        if let Some(ResponseTypes::Flow(f)) = &r.response_types {
            line.clear();
            write_compact(&mut line, f, &opts);
        }
    }

    let rounds = 200;
    let n = (bytes.len() * rounds) as f64;

    // Full pipeline.
    let a0 = allocs();
    let t0 = Instant::now();
    let mut matched = 0u64;
    let mut out_bytes = 0usize;
    for _ in 0..rounds {
        for b in &bytes {
            let r = GetFlowsResponse::decode(b.as_slice()).expect("decode");
            if let Some(ResponseTypes::Flow(f)) = &r.response_types
                && filter.matches(f)
            {
                matched += 1;
                line.clear();
                write_compact(&mut line, f, &opts);
                out_bytes += line.len();
            }
        }
    }
    let full = t0.elapsed();
    let full_allocs = allocs() - a0;

    // Filter + format only (already decoded).
    let a1 = allocs();
    let t1 = Instant::now();
    for _ in 0..rounds {
        for r in &decoded {
            if let Some(ResponseTypes::Flow(f)) = &r.response_types
                && filter.matches(f)
            {
                line.clear();
                write_compact(&mut line, f, &opts);
                black_box(&line);
            }
        }
    }
    let ff = t1.elapsed();
    let ff_allocs = allocs() - a1;

    // Format every flow (no filter).
    let a2 = allocs();
    let t2 = Instant::now();
    for _ in 0..rounds {
        for r in &decoded {
            if let Some(ResponseTypes::Flow(f)) = &r.response_types {
                line.clear();
                write_compact(&mut line, f, &opts);
                black_box(&line);
            }
        }
    }
    let fmt = t2.elapsed();
    let fmt_allocs = allocs() - a2;

    println!(
        "(a) decode → filter → compact, {} fixture flows ({} B protobuf) × {rounds} rounds, one core",
        bytes.len(),
        total_bytes
    );
    println!(
        "    full pipeline : {:>10.0} flows/s  ({:.2} µs/flow, {:.1} allocations/flow, {:.1}% matched, {} B out)",
        n / full.as_secs_f64(),
        full.as_secs_f64() * 1e6 / n,
        full_allocs as f64 / n,
        matched as f64 * 100.0 / n,
        out_bytes
    );
    println!(
        "    filter+format : {:>10.0} flows/s  ({:.3} allocations/flow)",
        n / ff.as_secs_f64(),
        ff_allocs as f64 / n
    );
    println!(
        "    format only   : {:>10.0} flows/s  ({:.3} allocations/flow)",
        n / fmt.as_secs_f64(),
        fmt_allocs as f64 / n
    );
}

fn bench_relay() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        use cutover::sim::relay::{RelayConfig, sample::homelab_topology, serve_with};
        use cutover::sim::{ActiveFaults, RequestLog, SimShared, Store, Tokens};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(SimShared {
            store: Store::default(),
            faults: tokio::sync::watch::channel(ActiveFaults::default()).0,
            topology: tokio::sync::watch::channel(homelab_topology("default")).0,
            requests: RequestLog::default(),
            tokens: Tokens::random(&mut fastrand::Rng::with_seed(1)),
            seed: 1,
            speed: 1.0,
            relay_addr: std::sync::OnceLock::from(addr),
            api_ca_pem: std::sync::OnceLock::new(),
            volumes: Default::default(),
        });
        let per_node = 16_383;
        let cfg = RelayConfig {
            flows_per_sec: 0.0,
            ring_capacity: per_node,
            prefill_per_node: per_node,
            burst_every: None,
            ..Default::default()
        };
        let task = serve_with(listener, shared, cfg);
        let target = addr.to_string();
        let ch = cutover::hubble::client::connect(&target).await.expect("connect");
        let t_fill = Instant::now();
        loop {
            let st = cutover::hubble::client::server_status(&ch, &target).await.expect("status");
            if st.num_flows >= 3 * per_node as u64 {
                break;
            }
            assert!(t_fill.elapsed() < Duration::from_secs(120), "prefill too slow");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let fill = t_fill.elapsed();
        // Warm up once, then measure.
        let run = |ch: tonic::transport::Channel| {
            let target = target.clone();
            async move {
                let req = GetFlowsRequest { number: u64::MAX, ..Default::default() };
                let mut s = cutover::hubble::client::get_flows(&ch, &target, req).await.expect("get_flows");
                let mut n = 0u64;
                while let Some(r) = s.message().await.expect("stream") {
                    if matches!(r.response_types, Some(ResponseTypes::Flow(_))) {
                        n += 1;
                    }
                    black_box(r);
                }
                n
            }
        };
        run(ch.clone()).await;
        let rounds = 6;
        let t0 = Instant::now();
        let mut flows = 0;
        for _ in 0..rounds {
            flows += run(ch.clone()).await;
        }
        let el = t0.elapsed();
        println!(
            "(b) sim relay → tonic client over loopback: {flows} flows in {:.2} s = {:.0} flows/s (backlog of {} flows streamed {rounds}×, decode included; prefill took {:.1} s)",
            el.as_secs_f64(),
            flows as f64 / el.as_secs_f64(),
            3 * per_node,
            fill.as_secs_f64()
        );
        task.abort();
    });
}

fn main() {
    let which: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let want = |p: &str| which.is_empty() || which.iter().any(|w| w == p);
    if want("a") {
        bench_pipeline();
    }
    if want("b") {
        bench_relay();
    }
}
