//! `-- sqlite-cipher`, `-- postgres-cipher`: what compression and encryption cost, through
//! `Application`, on one store. Here `raw` is not a driver baseline but the same work with the
//! cipher off (the plain JSON codec), so the ratio is the cost of the codec itself.
//!
//! - `append_1_cipher`, `append_1_zlib_cipher`: events per second saving new aggregates of one
//!   event, with AES-256-GCM (and zlib before it) against plain JSON, alternating save by save.
//! - `load_1000_cipher`, `load_1000_zlib_cipher`: median milliseconds loading an aggregate of
//!   1000 events (no snapshot), alternating load by load.
//! - `size <event> <codec> bytes=N`: the stored payload of the seed's widget `Registered` event
//!   and of the benchmark's `Added` event, read back from the store, for each codec; and
//!   `<compressor>_always`: what it would take compressed even when that does not shrink it
//!   (the codec then stores it uncompressed).

use std::time::{Duration, Instant};

use eventsourcing::{
    codecs::{Compression, Key, Keyring},
    prelude::*,
    PayloadCodec, Snapshotting,
};

use super::{
    counter::{counter_with, Counter},
    stats::{median_ms, per_second, report},
    BoxError,
};

#[path = "../../../examples/common/widget.rs"]
mod widget;

/// Loads timed per load figure (each side); the median is reported.
const LOADS: usize = 25;

/// `plain`, each compressor (`zlib`, `zstd`), `aes`, then each compressor with it
/// (`zlib+aes`, `zstd+aes`).
fn codecs() -> Vec<(String, PayloadCodec)> {
    // A fixed key: the figures do not depend on which key.
    let ring = Keyring::new(Key::from_bytes([42; 32]));
    let compressed = Compression::ALL.map(|c| (c.name(), PayloadCodec::new().compress(c)));
    let mut out = vec![("plain".to_owned(), PayloadCodec::new())];
    out.extend(
        compressed
            .iter()
            .map(|(name, c)| (name.to_string(), c.clone())),
    );
    out.push(("aes".to_owned(), PayloadCodec::new().encrypt(ring.clone())));
    for (name, codec) in compressed {
        out.push((format!("{name}+aes"), codec.encrypt(ring.clone())));
    }
    out
}

fn codec(name: &str) -> Result<PayloadCodec, BoxError> {
    codecs()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, c)| c)
        .ok_or_else(|| format!("no codec {name}").into())
}

/// Every figure of this mode, on `store`.
pub(crate) async fn figures<S: EventStore + Clone>(store: S, saves: usize) -> Result<(), BoxError> {
    let off = Application::new(store.clone()).with_snapshotting(Snapshotting::disabled());
    for (figure, name) in [
        ("append_1_cipher", "aes"),
        ("append_1_zlib_cipher", "zlib+aes"),
    ] {
        let on = Application::with_codec(store.clone(), codec(name)?)
            .with_snapshotting(Snapshotting::disabled());
        append_1(figure, &on, &off, saves).await?;
    }
    for (figure, name) in [
        ("load_1000_cipher", "aes"),
        ("load_1000_zlib_cipher", "zlib+aes"),
    ] {
        let on = Application::with_codec(store.clone(), codec(name)?)
            .with_snapshotting(Snapshotting::disabled());
        load_1000(figure, &on, &off).await?;
    }
    sizes(&store).await
}

async fn append_1<S: EventStore>(
    figure: &str,
    on: &Application<S, PayloadCodec>,
    off: &Application<S>,
    saves: usize,
) -> Result<(), BoxError> {
    for _ in 0..saves / 10 {
        on.save(&mut counter_with(1)).await?;
        off.save(&mut counter_with(1)).await?;
    }
    let (mut ours, mut theirs) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..saves {
        let (mut a, mut b) = (counter_with(1), counter_with(1));
        let start = Instant::now();
        on.save(&mut a).await?;
        ours += start.elapsed();
        let start = Instant::now();
        off.save(&mut b).await?;
        theirs += start.elapsed();
    }
    report(
        figure,
        per_second(saves, ours),
        per_second(saves, theirs),
        "events/s",
    );
    Ok(())
}

async fn load_1000<S: EventStore>(
    figure: &str,
    on: &Application<S, PayloadCodec>,
    off: &Application<S>,
) -> Result<(), BoxError> {
    let (mut a, mut b) = (counter_with(1000), counter_with(1000));
    on.save(&mut a).await?;
    off.save(&mut b).await?;
    let check_a: Counter = on.repository().get(a.id()).await?;
    let check_b: Counter = off.repository().get(b.id()).await?;
    if (check_a.version(), check_a.total) != (check_b.version(), check_b.total) {
        return Err(format!("{figure}: cipher on and off disagree").into());
    }
    let (mut ours, mut theirs) = (Vec::with_capacity(LOADS), Vec::with_capacity(LOADS));
    for _ in 0..LOADS {
        let start = Instant::now();
        let _: Counter = on.repository().get(a.id()).await?;
        ours.push(start.elapsed());
        let start = Instant::now();
        let _: Counter = off.repository().get(b.id()).await?;
        theirs.push(start.elapsed());
    }
    report(figure, median_ms(ours), median_ms(theirs), "ms");
    Ok(())
}

/// The stored size of one widget `Registered` event and one counter `Added` event per codec.
async fn sizes<S: EventStore + Clone>(store: &S) -> Result<(), BoxError> {
    for (name, codec) in codecs() {
        let app = Application::with_codec(store.clone(), codec)
            .with_snapshotting(Snapshotting::disabled());
        let mut w = widget::WidgetRegistryEndpoint::create(
            "https://api.example.com/widgets/v2/endpoint".into(),
            "Production widget endpoint".into(),
            "tenant-3f9c2a".into(),
        );
        app.save(&mut w).await?;
        let mut c = counter_with(2);
        app.save(&mut c).await?;
        for (event, id, version) in [
            ("widget_registered", w.id(), 1),
            ("counter_added", c.id(), 2),
        ] {
            let stored = store.load(id, version - 1, Some(version)).await?;
            let payload = stored
                .first()
                .map(|e| e.payload.clone())
                .unwrap_or_default();
            println!("size {event} {name} bytes={}", payload.len());
            if name == "plain" {
                // What storing it compressed regardless would take: the compressor's output
                // and the 4-byte envelope header.
                for c in Compression::ALL {
                    let forced = c.compressed(&payload)?.len() + 4;
                    println!("size {event} {}_always bytes={forced}", c.name());
                }
            }
        }
    }
    Ok(())
}
