//! Load generator for scripts/bench.sh: talks to a signer on loopback with
//! the grpcio client and prints one `key=value` line per run. Every request
//! carries a distinct, pre-generated CSR, so nothing can be served from a cache.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use argh::FromArgs;
use grpcio::{
    CallOption, ChannelBuilder, ChannelCredentialsBuilder, EnvBuilder, Environment, MetadataBuilder,
};
use talos_csr_signer::pki::csr::build as build_csr;
use talos_csr_signer::pki::keys::KeyType;
use talos_csr_signer::pki::San;
use talos_csr_signer::proto::security::CertificateRequest;
use talos_csr_signer::proto::security_grpc::SecurityServiceClient;

#[derive(FromArgs)]
/// Load generator for talos-csr-signer benchmarks (loopback only).
struct Args {
    #[argh(subcommand)]
    mode: Mode,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Mode {
    Calls(Calls),
    Idle(Idle),
    Ready(Ready),
    Ceiling(Ceiling),
    Body(Body),
    Storm(Storm),
}

#[derive(FromArgs)]
#[argh(subcommand, name = "storm")]
/// A reboot storm: N workers arriving at a rate, each on fresh TLS connections, retrying every error as Talos does (10 s per attempt, exponential back-off from 1 s with up to 1 s of jitter) until served.
struct Storm {
    #[argh(option)]
    /// signer address (loopback)
    target: String,
    #[argh(option)]
    /// machine CA certificate
    ca: PathBuf,
    #[argh(option)]
    /// machine token file
    token_file: PathBuf,
    #[argh(option, default = "4000")]
    /// workers
    workers: usize,
    #[argh(option, default = "1000.0")]
    /// arrivals per second
    rate: f64,
    #[argh(option, default = "300")]
    /// give a worker up after this many seconds
    give_up_s: u64,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "calls")]
/// Certificate calls: persistent connections, or a fresh one per call (--fresh).
struct Calls {
    /// signer address (loopback)
    #[argh(option)]
    target: String,
    /// machine CA certificate (trust for TLS)
    #[argh(option)]
    ca: PathBuf,
    /// machine token file
    #[argh(option)]
    token_file: PathBuf,
    /// parallel callers, each with its own connection
    #[argh(option, default = "1")]
    concurrency: usize,
    /// total calls
    #[argh(option, default = "2000")]
    requests: usize,
    /// distinct CSRs to cycle through (at least the number of requests is best)
    #[argh(option, default = "1000")]
    csrs: usize,
    /// CSR key type
    #[argh(option, default = "KeyType::Ed25519")]
    key_type: KeyType,
    /// a new TLS connection for every call, as Talos workers do
    #[argh(switch)]
    fresh: bool,
    /// pace the whole run at this many calls per second (0: as fast as possible)
    #[argh(option, default = "0.0")]
    rate: f64,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "idle")]
/// Opens N TLS connections (one call each), holds them idle, then exits.
struct Idle {
    #[argh(option)]
    /// signer address (loopback)
    target: String,
    #[argh(option)]
    /// machine CA certificate
    ca: PathBuf,
    #[argh(option)]
    /// machine token file
    token_file: PathBuf,
    #[argh(option, default = "1000")]
    /// connections to hold
    connections: usize,
    #[argh(option, default = "10")]
    /// seconds to hold them after all are open
    hold: u64,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "ready")]
/// Polls until the port completes a TLS handshake; prints the wait in ms.
struct Ready {
    #[argh(option)]
    /// signer address (loopback)
    target: String,
    #[argh(option, default = "10000")]
    /// give up after this many ms
    timeout_ms: u64,
    #[argh(option)]
    /// measure from this CLOCK_REALTIME instant (ns since the epoch), e.g. the server's start
    since_unix_ns: Option<u128>,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "ceiling")]
/// In-process crypto ceiling: parse+verify CSR and sign a certificate in a tight loop on all cores.
struct Ceiling {
    #[argh(option)]
    /// CA certificate
    ca_cert: PathBuf,
    #[argh(option)]
    /// CA key
    ca_key: PathBuf,
    #[argh(option, default = "KeyType::Ed25519")]
    /// CSR key type
    key_type: KeyType,
    #[argh(option, default = "3")]
    /// seconds to run
    seconds: u64,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "body")]
/// Writes one Certificate request as a gRPC message (5-byte frame header +
/// protobuf) to stdout, for HTTP/2 tools such as h2load.
struct Body {
    #[argh(option, default = "KeyType::Ed25519")]
    /// CSR key type
    key_type: KeyType,
}

fn main() {
    let args: Args = argh::from_env();
    match args.mode {
        Mode::Calls(c) => calls(c),
        Mode::Idle(i) => idle(i),
        Mode::Ready(r) => ready(r),
        Mode::Ceiling(c) => ceiling(c),
        Mode::Body(b) => body(b),
        Mode::Storm(st) => storm(st),
    }
}

/// The token file's content, trimmed.
fn read_token(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap().trim().to_string()
}

fn csrs(n: usize, kt: KeyType) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let key = kt.generate().unwrap();
            let sans = [
                San::Ip(
                    format!("10.{}.{}.{}", i / 65536 % 256, i / 256 % 256, i % 256)
                        .parse()
                        .unwrap(),
                ),
                San::Dns(format!("w{i}")),
            ];
            build_csr(&key, kt, &format!("w{i}.bench"), &sans).unwrap()
        })
        .collect()
}

fn client(env: &Arc<Environment>, target: &str, ca: &[u8]) -> SecurityServiceClient {
    let creds = ChannelCredentialsBuilder::new()
        .root_cert(ca.to_vec())
        .build();
    // Own subchannel pool: each client gets its own TCP+TLS connection.
    let ch = ChannelBuilder::new(Arc::clone(env))
        .use_local_subchannel_pool(true)
        .set_credentials(creds)
        .connect(target);
    SecurityServiceClient::new(ch)
}

fn call(c: &SecurityServiceClient, token: &str, csr: &[u8]) -> bool {
    c.certificate_opt(&request(csr), options(token)).is_ok()
}

fn request(csr: &[u8]) -> CertificateRequest {
    CertificateRequest {
        csr: csr.to_vec(),
        ..Default::default()
    }
}

fn options(token: &str) -> CallOption {
    let mut md = MetadataBuilder::new();
    md.add_str("token", token).unwrap();
    CallOption::default()
        .headers(md.build())
        .timeout(Duration::from_secs(30))
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// What every caller of one run shares.
struct Run {
    next: AtomicUsize,
    failed: AtomicUsize,
    requests: usize,
    csrs: Vec<Vec<u8>>,
    token: String,
}

impl Run {
    /// The next request's number and CSR, until all are taken.
    fn take(&self) -> Option<(usize, &[u8])> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        (i < self.requests).then(|| (i, self.csrs[i % self.csrs.len()].as_slice()))
    }

    fn record(&self, lat: &mut Vec<Duration>, t: Instant, ok: bool) {
        lat.push(t.elapsed());
        if !ok {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn calls(a: Calls) {
    let ca = std::fs::read(&a.ca).unwrap();
    let token = read_token(&a.token_file);
    let run = Arc::new(Run {
        next: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        requests: a.requests,
        csrs: csrs(a.csrs.max(1), a.key_type),
        token,
    });
    let env = Arc::new(EnvBuilder::new().cq_count(2).build());
    let (mut lat, elapsed) = if a.fresh || a.rate > 0.0 {
        callers(&a, &env, &ca, &run)
    } else {
        lanes(&a, &env, &ca, &run)
    };
    lat.sort();
    println!(
        "requests={} failed={} seconds={:.3} rps={:.0} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        lat.len(),
        run.failed.load(Ordering::Relaxed),
        elapsed,
        lat.len() as f64 / elapsed,
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0),
    );
}

/// Persistent connections driven from gRPC's completion-queue threads: each
/// reply starts that lane's next call, so the generator adds no thread
/// hand-off of its own.
fn lanes(a: &Calls, env: &Arc<Environment>, ca: &[u8], run: &Arc<Run>) -> (Vec<Duration>, f64) {
    let clients: Vec<_> = (0..a.concurrency)
        .map(|_| {
            let c = client(env, &a.target, ca);
            // Connect before timing starts.
            call(&c, &run.token, &run.csrs[0]);
            c
        })
        .collect();
    let (tx, rx) = std::sync::mpsc::channel();
    let started = Instant::now();
    for c in clients {
        let (run, tx) = (Arc::clone(run), tx.clone());
        c.clone().spawn(async move {
            let mut lat = Vec::new();
            while let Some((_, csr)) = run.take() {
                let t = Instant::now();
                let ok = match c.certificate_async_opt(&request(csr), options(&run.token)) {
                    Ok(reply) => reply.await.is_ok(),
                    Err(_) => false,
                };
                run.record(&mut lat, t, ok);
            }
            let _ = tx.send(lat);
        });
    }
    drop(tx);
    let lat = rx.iter().flatten().collect();
    (lat, started.elapsed().as_secs_f64())
}

/// One blocking thread per caller: for paced runs (--rate) and for a fresh
/// connection per call (--fresh), as Talos workers make them.
fn callers(a: &Calls, env: &Arc<Environment>, ca: &[u8], run: &Arc<Run>) -> (Vec<Duration>, f64) {
    let barrier = Arc::new(Barrier::new(a.concurrency + 1));
    let interval = (a.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / a.rate));
    let start_at = Arc::new(std::sync::OnceLock::<Instant>::new());
    let handles: Vec<_> = (0..a.concurrency)
        .map(|_| {
            let (env, ca, run, barrier, start_at) = (
                env.clone(),
                ca.to_vec(),
                run.clone(),
                barrier.clone(),
                start_at.clone(),
            );
            let (target, fresh) = (a.target.clone(), a.fresh);
            thread::spawn(move || {
                let mut lat = Vec::new();
                let persistent = (!fresh).then(|| client(&env, &target, &ca));
                if let Some(c) = &persistent {
                    // Connect before timing starts.
                    call(c, &run.token, &run.csrs[0]);
                }
                barrier.wait();
                let t0 = *start_at.get_or_init(Instant::now);
                while let Some((i, csr)) = run.take() {
                    if let Some(iv) = interval {
                        let due = t0 + iv * i as u32;
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            thread::sleep(wait);
                        }
                    }
                    let t = Instant::now();
                    let ok = match &persistent {
                        Some(c) => call(c, &run.token, csr),
                        None => call(&client(&env, &target, &ca), &run.token, csr),
                    };
                    run.record(&mut lat, t, ok);
                }
                lat
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    let lat = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    (lat, started.elapsed().as_secs_f64())
}

fn idle(a: Idle) {
    let ca = std::fs::read(&a.ca).unwrap();
    let token = read_token(&a.token_file);
    let csr = csrs(1, KeyType::Ed25519).remove(0);
    let env = Arc::new(EnvBuilder::new().cq_count(2).build());
    let mut held = Vec::with_capacity(a.connections);
    let mut ok = 0;
    for _ in 0..a.connections {
        let c = client(&env, &a.target, &ca);
        if call(&c, &token, &csr) {
            ok += 1;
        }
        held.push(c);
    }
    println!("connections={} ok={ok} holding_s={}", a.connections, a.hold);
    thread::sleep(Duration::from_secs(a.hold));
    drop(held);
}

fn ready(a: Ready) {
    use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
    let t0 = Instant::now();
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_verify(SslVerifyMode::NONE);
    b.set_alpn_protos(b"\x02h2").unwrap();
    let connector = b.build();
    loop {
        if let Ok(tcp) = std::net::TcpStream::connect(&a.target) {
            let cfg = connector.configure().unwrap().verify_hostname(false);
            if cfg.connect("localhost", tcp).is_ok() {
                let ms = match a.since_unix_ns {
                    Some(start) => {
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .unwrap()
                            .as_nanos();
                        now.saturating_sub(start) as f64 / 1e6
                    }
                    None => t0.elapsed().as_secs_f64() * 1000.0,
                };
                println!("ready_ms={ms:.1}");
                return;
            }
        }
        if t0.elapsed() > Duration::from_millis(a.timeout_ms) {
            println!("ready_ms=timeout");
            std::process::exit(1);
        }
        thread::sleep(Duration::from_micros(500));
    }
}

fn ceiling(a: Ceiling) {
    use talos_csr_signer::pki::ca::MachineCa;
    use talos_csr_signer::signer::call::issue;
    use talos_csr_signer::signer::policy::{KeyClass, Policy};
    let ca = MachineCa::new(
        &std::fs::read(&a.ca_cert).unwrap(),
        &std::fs::read(&a.ca_key).unwrap(),
        &[],
        talos_csr_signer::unix_now(),
    )
    .unwrap();
    let ca = Arc::new(ca);
    let csrs = Arc::new(csrs(1000, a.key_type));
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    let stop = Instant::now() + Duration::from_secs(a.seconds);
    let policy = Arc::new(Policy {
        key_types: vec![KeyClass::of(a.key_type)],
        ..Policy::default()
    });
    let handles: Vec<_> = (0..cores)
        .map(|t| {
            let (ca, csrs, policy) = (ca.clone(), csrs.clone(), policy.clone());
            thread::spawn(move || {
                let mut n = 0usize;
                while Instant::now() < stop {
                    let csr = &csrs[(t * 7919 + n) % csrs.len()];
                    let now = talos_csr_signer::unix_now();
                    let validity = Duration::from_secs(86_400);
                    if let Err(r) = issue(&ca, &policy, csr, None, validity, now) {
                        panic!("the ceiling's CSR was refused: {}", r.reason);
                    }
                    n += 1;
                }
                n
            })
        })
        .collect();
    let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    println!(
        "cores={cores} ops={total} ops_per_s={:.0}",
        total as f64 / a.seconds as f64
    );
}

fn body(a: Body) {
    use protobuf::Message;
    use std::io::Write;
    let msg = request(&csrs(1, a.key_type)[0]).write_to_bytes().unwrap();
    let mut out = vec![0u8]; // not compressed
    out.extend_from_slice(&u32::try_from(msg.len()).unwrap().to_be_bytes());
    out.extend_from_slice(&msg);
    std::io::stdout().write_all(&out).unwrap();
}

/// What one storm worker went through.
struct Outcome {
    served_after: Option<Duration>,
    attempts: u32,
    /// RESOURCE_EXHAUSTED (queue full).
    busy: u32,
    /// The 10 s attempt deadline passed (connecting, handshaking or waiting).
    deadline: u32,
    other: u32,
}

fn storm(a: Storm) {
    let ca = std::fs::read(&a.ca).unwrap();
    let token = read_token(&a.token_file);
    let csrs = Arc::new(csrs(a.workers.min(1000), KeyType::Ed25519));
    let env = Arc::new(EnvBuilder::new().cq_count(2).build());
    let t0 = Instant::now() + Duration::from_millis(200);
    let handles: Vec<_> = (0..a.workers)
        .map(|i| {
            let (env, ca, csrs, token, target) = (
                env.clone(),
                ca.clone(),
                csrs.clone(),
                token.clone(),
                a.target.clone(),
            );
            let arrive = t0 + Duration::from_secs_f64(i as f64 / a.rate);
            let give_up = Duration::from_secs(a.give_up_s);
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    if let Some(wait) = arrive.checked_duration_since(Instant::now()) {
                        thread::sleep(wait);
                    }
                    storm_worker(
                        &env,
                        &target,
                        &ca,
                        &token,
                        &csrs[i % csrs.len()],
                        i,
                        give_up,
                    )
                })
                .unwrap()
        })
        .collect();
    let outcomes: Vec<Outcome> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let elapsed = t0.elapsed().as_secs_f64();
    let mut served: Vec<Duration> = outcomes.iter().filter_map(|o| o.served_after).collect();
    served.sort();
    let sum = |f: fn(&Outcome) -> u32| outcomes.iter().map(f).sum::<u32>();
    println!(
        "workers={} served={} gave_up={} within_60s={} attempts={} retried_workers={} busy={} deadline={} other_errors={} seconds={:.1} p50_s={:.2} p99_s={:.2} max_s={:.2}",
        a.workers,
        served.len(),
        a.workers - served.len(),
        served.iter().filter(|d| d.as_secs() < 60).count(),
        sum(|o| o.attempts),
        outcomes.iter().filter(|o| o.attempts > 1).count(),
        sum(|o| o.busy),
        sum(|o| o.deadline),
        sum(|o| o.other),
        elapsed,
        percentile(&served, 0.50) / 1000.0,
        percentile(&served, 0.99) / 1000.0,
        percentile(&served, 1.0) / 1000.0,
    );
}

/// One worker: a fresh connection per attempt, 10 s per attempt, then back
/// off 1 s, 2 s, 4 s … (at most 16 s) plus up to 1 s of jitter, as Talos's
/// certificate controller retries.
fn storm_worker(
    env: &Arc<Environment>,
    target: &str,
    ca: &[u8],
    token: &str,
    csr: &[u8],
    seed: usize,
    give_up: Duration,
) -> Outcome {
    let start = Instant::now();
    let mut o = Outcome {
        served_after: None,
        attempts: 0,
        busy: 0,
        deadline: 0,
        other: 0,
    };
    let mut backoff = Duration::from_secs(1);
    while start.elapsed() < give_up {
        o.attempts += 1;
        let c = client(env, target, ca);
        let opt = options(token).timeout(Duration::from_secs(10));
        match c.certificate_opt(&request(csr), opt) {
            Ok(_) => {
                o.served_after = Some(start.elapsed());
                return o;
            }
            Err(grpcio::Error::RpcFailure(s)) => match s.code() {
                grpcio::RpcStatusCode::RESOURCE_EXHAUSTED => o.busy += 1,
                grpcio::RpcStatusCode::DEADLINE_EXCEEDED => o.deadline += 1,
                _ => o.other += 1,
            },
            Err(_) => o.other += 1,
        }
        let jitter =
            Duration::from_millis(((seed * 7919 + o.attempts as usize * 104_729) % 1000) as u64);
        thread::sleep(backoff + jitter);
        backoff = (backoff * 2).min(Duration::from_secs(16));
    }
    o
}
