//! Prometheus metrics, kept always (they are a few atomics per call);
//! server::metrics serves them on `--metrics-listen` at `GET /metrics`.

use std::sync::Arc;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub issued: IntCounter,
    pub duration: Histogram,
    pub auth_failures: IntCounter,
    pub throttled: IntCounter,
    pub policy_denials: IntCounterVec,
    pub queue_depth: IntGauge,
    pub reloads: IntCounterVec,
    pub ca_not_after: IntGauge,
    pub serving_not_after: IntGauge,
    pub fips_mode: IntGauge,
}

fn name(n: &str) -> String {
    format!("talos_csr_signer_{n}")
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let registry = Registry::new();
        let counter = |n: &str, help: &str| IntCounter::new(name(n), help).expect("valid metric");
        let counter_vec = |n: &str, help: &str, label: &str| {
            IntCounterVec::new(Opts::new(name(n), help), &[label]).expect("valid metric")
        };
        let gauge = |n: &str, help: &str| IntGauge::new(name(n), help).expect("valid metric");
        // From 0.5 ms (an Ed25519 signature) to 2.5 s (a deep queue).
        let buckets = vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        ];
        let m = Metrics {
            requests: counter_vec(
                "requests_total",
                "Certificate calls by gRPC status code.",
                "code",
            ),
            issued: counter("certificates_issued_total", "Certificates issued."),
            duration: Histogram::with_opts(
                HistogramOpts::new(
                    name("request_duration_seconds"),
                    "Certificate call duration, accept to answer.",
                )
                .buckets(buckets),
            )
            .expect("valid metric"),
            auth_failures: counter(
                "auth_failures_total",
                "Calls refused for a missing or wrong token.",
            ),
            throttled: counter(
                "throttled_total",
                "Calls refused because the address is throttled.",
            ),
            policy_denials: counter_vec(
                "policy_denials_total",
                "Calls refused by the signing policy, by rule.",
                "reason",
            ),
            queue_depth: gauge("queue_depth", "Calls waiting for or in signing."),
            reloads: counter_vec(
                "reloads_total",
                "Reloads of CA, token and TLS files, by result.",
                "result",
            ),
            ca_not_after: gauge(
                "ca_not_after_timestamp_seconds",
                "The machine CA's notAfter, Unix time.",
            ),
            serving_not_after: gauge(
                "serving_cert_not_after_timestamp_seconds",
                "The serving certificate's notAfter, Unix time.",
            ),
            fips_mode: gauge(
                "fips_mode",
                "1 when all cryptography runs on the OpenSSL FIPS provider.",
            ),
            registry,
        };
        let build = IntGaugeVec::new(
            Opts::new(name("build_info"), "Version and OpenSSL library; always 1."),
            &["version", "openssl"],
        )
        .expect("valid metric");
        build
            .with_label_values(&[env!("CARGO_PKG_VERSION"), openssl::version::version()])
            .set(1);
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.requests.clone()),
            Box::new(m.issued.clone()),
            Box::new(m.duration.clone()),
            Box::new(m.auth_failures.clone()),
            Box::new(m.throttled.clone()),
            Box::new(m.policy_denials.clone()),
            Box::new(m.queue_depth.clone()),
            Box::new(m.reloads.clone()),
            Box::new(m.ca_not_after.clone()),
            Box::new(m.serving_not_after.clone()),
            Box::new(m.fips_mode.clone()),
            Box::new(build),
        ];
        for c in collectors {
            m.registry.register(c).expect("unique metric names");
        }
        // Present from the start, so rates work before the first failure.
        for result in ["success", "failure"] {
            m.reloads.with_label_values(&[result]);
        }
        Arc::new(m)
    }

    /// The text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4096);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        out
    }
}
