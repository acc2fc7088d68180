//! Cost of one publication to N subscribers (in-memory connections that
//! do not read: their queues stay full and drop their oldest message, the
//! steady state of `offer`).

#![allow(missing_docs)] // criterion's macros

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use silverback::{testing, Message, Overflow, PreparedMessage, QueueLimits};
use silverback_hub::Hub;

fn fanout(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("publish");
    for n in [1_000usize, 10_000] {
        let hub = Hub::builder()
            .overflow(Overflow::DropOldest)
            .build()
            .unwrap();
        let mut conns = Vec::with_capacity(n);
        rt.block_on(async {
            for i in 0..n {
                let (client, mut server) = testing::pair(Default::default(), Default::default());
                let tx = server.sender_with_limits(QueueLimits::new(64, 1 << 20));
                hub.subscribe("bench", &tx, format!("c{i}")).await.unwrap();
                conns.push((client, server));
            }
        });
        let msg = PreparedMessage::new(Message::text("x".repeat(100)));
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| rt.block_on(hub.publish("bench", msg.clone())).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
