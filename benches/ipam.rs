//! Allocator benchmark (pure, no root): how long `Pool::choose` and `Pool::check` take with
//! 60,000 leases in a /16. Run with `cargo bench --bench ipam`; `scripts/bench.sh` runs it and
//! copies the figures into docs/benchmarks.md.
//!
//! Output: one human line per case, then one machine line per case on stdout:
//! `ipam,<case>,<leases>,<median_us>,<p90_us>,<max_us>,<result>`.
//! Exit code 1 when the median of a `choose`/`check` case reaches 1 ms (the target of issue 4).

// A benchmark run by hand or by scripts/bench.sh (never piped into a closed reader).
#![allow(clippy::disallowed_macros)]

use std::collections::BTreeSet;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use docker_netattach::ipam::{Pool, Subnet, key};

const LEASES: u128 = 60_000;
const TARGET_US: f64 = 1000.0;

fn ip(s: &str) -> u128 {
    key(s.parse::<IpAddr>().expect("valid address"))
}

/// Small deterministic PRNG (xorshift64*) so runs are comparable without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Times `f` `iters` times; returns (median, p90, max) in microseconds and the last result.
fn time<T>(iters: usize, mut f: impl FnMut() -> T) -> (f64, f64, f64, T) {
    let mut last = f(); // warm-up
    let mut samples = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t0 = Instant::now();
        last = black_box(f());
        samples.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.9), samples[samples.len() - 1], last)
}

fn main() {
    // `cargo bench` passes `--bench`: time and gate. `cargo test --all-targets` runs this
    // unoptimised and without it: a few iterations as a smoke test, never gated.
    let benching = std::env::args().any(|a| a == "--bench");
    let subnet: Subnet = "172.17.0.0/16".parse().expect("valid subnet");
    let gateway = ip("172.17.0.1");
    let top = ip("172.17.255.254");
    let pool = Pool {
        subnet,
        docker_range: None,
    };
    let with_range = Pool {
        subnet,
        docker_range: Some("172.17.0.0/17".parse().expect("valid range")),
    };

    // Our own allocator fills the subnet from the top down: the worst case for a top-down scan
    // is exactly the layout it produces, a solid block of 60,000 leases under the top.
    let mut top_block: BTreeSet<u128> = (0..LEASES).map(|i| top - i).collect();
    top_block.insert(gateway);
    // The same number scattered at random over the subnet.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut scattered = BTreeSet::new();
    scattered.insert(gateway);
    while scattered.len() < LEASES as usize + 1 {
        let host = u128::from(rng.next() % 65_534) + 1;
        scattered.insert(ip("172.17.0.0") + host);
    }
    // Docker's fixed-cidr covers the lower half; 32,000 of ours fill the upper half from the top.
    let mut upper: BTreeSet<u128> = (0..32_000).map(|i| top - i).collect();
    upper.extend((2..28_002).map(|i| ip("172.17.0.0") + i)); // Docker's own endpoints
    upper.insert(gateway);
    // What `LeaseStore::taken` does besides the readdir: parse 60,000 file names into the set.
    let names: Vec<String> = top_block
        .iter()
        .map(|a| Ipv4Addr::from(*a as u32).to_string())
        .collect();

    let iters = if benching { 300 } else { 3 };
    let mut failed = false;
    let mut report = |case: &str, leases: usize, r: (f64, f64, f64, String), gated: bool| {
        let (med, p90, max, result) = r;
        let verdict = if !gated {
            "info"
        } else if med < TARGET_US {
            "ok"
        } else {
            failed = true;
            "MISS"
        };
        println!(
            "{case:<44} {leases:>6} leases  median {med:>8.1} us  p90 {p90:>8.1} us  max {max:>8.1} us  -> {result}  [{verdict}]"
        );
        println!("ipam,{case},{leases},{med:.1},{p90:.1},{max:.1},{result}");
    };

    let r = time(iters, || pool.choose(black_box(&top_block)));
    report(
        "choose: solid block under the top",
        top_block.len(),
        (r.0, r.1, r.2, fmt(r.3)),
        true,
    );
    let r = time(iters, || pool.choose(black_box(&scattered)));
    report(
        "choose: scattered at random",
        scattered.len(),
        (r.0, r.1, r.2, fmt(r.3)),
        true,
    );
    let r = time(iters, || with_range.choose(black_box(&upper)));
    report(
        "choose: fixed-cidr /17 and upper half full",
        upper.len(),
        (r.0, r.1, r.2, fmt(r.3)),
        true,
    );
    let want = IpAddr::V4(Ipv4Addr::from((top - LEASES - 7) as u32));
    let r = time(iters, || {
        pool.check(black_box(want), black_box(&top_block)).is_ok()
    });
    report(
        "check: explicit --ip",
        top_block.len(),
        (r.0, r.1, r.2, format!("{want} free={}", r.3)),
        true,
    );
    let r = time(30, || {
        names
            .iter()
            .filter_map(|n| n.parse::<IpAddr>().ok())
            .map(key)
            .collect::<BTreeSet<u128>>()
            .len()
    });
    report(
        "taken set: parse 60k names",
        names.len(),
        (r.0, r.1, r.2, format!("{} addresses", r.3)),
        false,
    );
    if failed && benching {
        eprintln!("ipam bench: a choose/check median reached {TARGET_US} us");
        std::process::exit(1);
    }
}

fn fmt(r: Result<IpAddr, docker_netattach::ipam::IpamError>) -> String {
    match r {
        Ok(a) => a.to_string(),
        Err(e) => format!("error: {e}"),
    }
}
