//! Runs operations on a store and on the model side by side, comparing every answer.
//!
//! Stores number positions differently (memory: save and index; SQLite: the rowid; PostgreSQL:
//! transaction id and sequence), so positions are compared by order only: the runner learns
//! the store's position of each event from a full log read after each save, checks that every
//! later answer gives the same event the same position, and that positions only grow.

use std::collections::BTreeMap;

use eventsourcing::chrono::DateTime;
use eventsourcing::{
    Error, EventStore, Metadata, NewEvent, ParkedEvent, Position, StoredEvent, Tracking, Uuid,
};

use super::ops::{stream_id, time, After, EventSpec, Op, Part, Save, Start, NAMES};
use super::spec::{Model, Refusal};

/// A store and the model it must agree with.
pub(crate) struct Runner<'a, S> {
    store: &'a S,
    model: Model,
    /// The store's position of each event of the model's log, in log order.
    positions: Vec<Position>,
}

fn position((commit, seq): (u64, u64)) -> Position {
    Position { commit, seq }
}

impl<'a, S: EventStore> Runner<'a, S> {
    pub(crate) fn new(store: &'a S) -> Self {
        Runner {
            store,
            model: Model::default(),
            positions: Vec::new(),
        }
    }

    /// Runs one operation on both; `Err` says how the store differed.
    pub(crate) async fn step(&mut self, op: &Op) -> Result<(), String> {
        match op {
            Op::Append(save) => {
                let events = self.events(save);
                let want = self.model.append(&events, None);
                let got = self.store.append(events).await;
                self.saved(got, want).await
            }
            Op::AppendTracked {
                save,
                name,
                position: p,
            } => {
                let events = self.events(save);
                let tracking = Tracking {
                    name: NAMES[*name].to_owned(),
                    position: position(*p),
                };
                let want = self.model.append(&events, Some(&tracking));
                let got = self.store.append_tracked(events, tracking).await;
                self.saved(got, want).await
            }
            Op::SaveSnapshot { snapshot, keep } => {
                self.model.save_snapshot(snapshot.clone(), *keep);
                self.store
                    .save_snapshot(snapshot.clone(), *keep)
                    .await
                    .map_err(|e| format!("save_snapshot failed: {e:?}"))
            }
            Op::Load {
                stream,
                after,
                up_to,
                replay,
            } => {
                let id = stream_id(*stream);
                let want = self.model.load(id, *after, *up_to);
                let got = if *replay {
                    self.store.load_for_replay(id, *after, *up_to).await
                } else {
                    self.store.load(id, *after, *up_to).await
                };
                let got = got.map_err(|e| format!("load failed: {e:?}"))?;
                self.same_events(&got, &want, *replay)
            }
            Op::StreamVersion(stream) => {
                let id = stream_id(*stream);
                let got = self.store.stream_version(id).await;
                let got = got.map_err(|e| format!("stream_version failed: {e:?}"))?;
                same("stream_version", got, self.model.version(id))
            }
            Op::ReadLog { after, limit } => {
                let (from, skip) = match after {
                    After::Start => (Position::START, 0),
                    After::End => (
                        Position {
                            commit: u64::MAX,
                            seq: u64::MAX,
                        },
                        self.model.log.len(),
                    ),
                    After::Event(k) => {
                        let skip = k % (self.positions.len() + 1);
                        let from = match skip {
                            0 => Position::START,
                            n => self.positions[n - 1],
                        };
                        (from, skip)
                    }
                };
                let want = self.model.read_log(skip, *limit);
                let got = self.read_log(from, *limit, want.len()).await?;
                self.same_events(&got, &want, false)
            }
            Op::LoadSnapshot {
                stream,
                at_or_below,
            } => {
                let id = stream_id(*stream);
                let got = self.store.load_snapshot(id, *at_or_below).await;
                let got = got.map_err(|e| format!("load_snapshot failed: {e:?}"))?;
                same(
                    "load_snapshot",
                    got,
                    self.model.load_snapshot(id, *at_or_below),
                )
            }
            Op::TrackingPosition(name) => {
                let got = self.store.tracking_position(NAMES[*name]).await;
                let got = got.map_err(|e| format!("tracking_position failed: {e:?}"))?;
                same(
                    "tracking_position",
                    got,
                    self.model.tracking_position(NAMES[*name]),
                )
            }
            Op::Park {
                name,
                position: p,
                stream,
                version,
                event_type,
                error,
            } => {
                let parked = ParkedEvent {
                    name: NAMES[*name].to_owned(),
                    position: position(*p),
                    stream_id: stream_id(*stream),
                    version: *version,
                    event_type: event_type.clone(),
                    error: error.clone(),
                    parked_at: time(1_700_000_000_000_000),
                };
                let want = self.model.park(parked.clone()).map_err(|r| vec![r]);
                let got = self.store.park(parked).await;
                same_outcome("park", got, want)
            }
            Op::Parked(name) => {
                let got = self.store.parked(NAMES[*name]).await;
                let got = got.map_err(|e| format!("parked failed: {e:?}"))?;
                // PostgreSQL stamps `parked_at` itself: compare everything else.
                let strip = |p: Vec<ParkedEvent>| -> Vec<ParkedEvent> {
                    p.into_iter()
                        .map(|p| ParkedEvent {
                            parked_at: DateTime::UNIX_EPOCH,
                            ..p
                        })
                        .collect()
                };
                same("parked", strip(got), strip(self.model.parked(NAMES[*name])))
            }
        }
    }

    /// The events of a save, resolved against the model's current versions.
    fn events(&self, save: &Save) -> Vec<NewEvent> {
        let mut queues: Vec<std::collections::VecDeque<NewEvent>> = save
            .parts
            .iter()
            .map(|part| self.part_events(part).into())
            .collect();
        let mut events = Vec::new();
        for pick in &save.interleave {
            let open: Vec<usize> = (0..queues.len())
                .filter(|&i| !queues[i].is_empty())
                .collect();
            if open.is_empty() {
                break;
            }
            let chosen = open[pick % open.len()];
            events.extend(queues[chosen].pop_front());
        }
        events.extend(queues.into_iter().flatten());
        events
    }

    fn part_events(&self, part: &Part) -> Vec<NewEvent> {
        let id = stream_id(part.stream);
        let next = self.model.version(id) + 1;
        let mut version = match part.start {
            Start::Next => next,
            Start::Stale(d) => next.saturating_sub(d),
            Start::Ahead(d) => next + d,
            Start::Absolute(v) => v,
        };
        let mut events = Vec::new();
        for (i, spec) in part.events.iter().enumerate() {
            if part.gap_at == Some(i) {
                version = version.saturating_add(1);
            }
            events.push(new_event(id, version, spec));
            version = version.saturating_add(1);
        }
        events
    }

    /// Compares a save's outcome, and learns the positions of what it wrote.
    async fn saved(
        &mut self,
        got: Result<(), Error>,
        want: Result<(), Vec<Refusal>>,
    ) -> Result<(), String> {
        let wrote = want.is_ok() && self.model.log.len() > self.positions.len();
        same_outcome("save", got, want)?;
        if wrote {
            let all = self.model.read_log(0, usize::MAX);
            let got = self
                .read_log(Position::START, usize::MAX, all.len())
                .await?;
            let mut positions: Vec<Position> = got.iter().map(|e| e.position).collect();
            if got.len() != all.len() || !positions.starts_with(&self.positions) {
                return Err(format!(
                    "after a save the log reads {} events (want {}), positions {positions:?}, \
                     earlier ones were {:?}",
                    got.len(),
                    all.len(),
                    self.positions
                ));
            }
            if positions.windows(2).any(|w| w[0] >= w[1]) {
                return Err(format!("log positions do not grow: {positions:?}"));
            }
            std::mem::swap(&mut self.positions, &mut positions);
            self.same_events(&got, &all, false)?;
        }
        Ok(())
    }

    /// `read_log`, read again a few times while it returns a strict prefix of `want` events:
    /// PostgreSQL holds back the head of the log while an older transaction of the server
    /// (another test's) still runs.
    async fn read_log(
        &self,
        after: Position,
        limit: usize,
        want: usize,
    ) -> Result<Vec<StoredEvent>, String> {
        let mut tries = 0;
        loop {
            let got = self.store.read_log(after, limit).await;
            let got = got.map_err(|e| format!("read_log({after:?}, {limit}) failed: {e:?}"))?;
            tries += 1;
            if got.len() >= want || tries == 10 {
                return Ok(got);
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// Same events, same content, and each at the position the store gave it in the log.
    /// `replay`: a store may leave `position` and `metadata` at their defaults.
    fn same_events(
        &self,
        got: &[StoredEvent],
        want: &[StoredEvent],
        replay: bool,
    ) -> Result<(), String> {
        let key = |e: &StoredEvent| (e.stream_id, e.version);
        if got.len() != want.len() {
            let got: Vec<_> = got.iter().map(key).collect();
            let want: Vec<_> = want.iter().map(key).collect();
            return Err(format!("events {got:?}, want {want:?}"));
        }
        for (g, w) in got.iter().zip(want) {
            let at = self.positions.get(w.position.seq as usize).copied();
            let mut expected = StoredEvent {
                position: at.unwrap_or_default(),
                ..w.clone()
            };
            if replay && g.position == Position::default() {
                expected.position = Position::default();
            }
            if replay && g.metadata == Metadata::default() {
                expected.metadata = Metadata::default();
            }
            if at.is_none() && !replay {
                return Err(format!("event {:?} was never seen in the log", key(w)));
            }
            if *g != expected {
                return Err(format!("event differs:\n got {g:?}\nwant {expected:?}"));
            }
        }
        Ok(())
    }
}

fn new_event(stream_id: Uuid, version: u64, spec: &EventSpec) -> NewEvent {
    let mut metadata = Metadata {
        correlation_id: spec.correlation.map(Uuid::from_u128),
        causation_id: spec.causation.map(Uuid::from_u128),
        values: BTreeMap::new(),
    };
    for (k, v) in &spec.values {
        metadata.values.insert(k.clone(), v.clone());
    }
    NewEvent {
        stream_id,
        version,
        event_type: spec.event_type.clone().into(),
        stream_type: spec.stream_type.clone().into(),
        schema_version: spec.schema_version,
        timestamp: time(spec.micros),
        payload: spec.payload.clone(),
        metadata,
    }
}

fn same<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, want {want:?}"))
    }
}

/// The same success, or one of the refusals the model allows (with what the contract lets a
/// caller rely on in it).
fn same_outcome(
    what: &str,
    got: Result<(), Error>,
    want: Result<(), Vec<Refusal>>,
) -> Result<(), String> {
    let agrees = match (&got, &want) {
        (Ok(()), Ok(())) => true,
        (Err(e), Err(allowed)) => allowed.iter().any(|refusal| is(e, refusal)),
        _ => false,
    };
    if agrees {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, want {want:?}"))
    }
}

fn is(got: &Error, want: &Refusal) -> bool {
    match (got, want) {
        (
            Error::Conflict {
                stream_id, actual, ..
            },
            Refusal::Conflict(stale),
        ) => stale.contains(&(*stream_id, *actual)),
        (
            Error::AlreadyProcessed {
                recorded,
                attempted,
                ..
            },
            Refusal::AlreadyProcessed {
                recorded: r,
                attempted: a,
            },
        ) => recorded == r && attempted == a,
        (
            Error::InvalidEvent {
                stream_id, version, ..
            },
            Refusal::InvalidEvent {
                stream_id: s,
                version: v,
            },
        ) => stream_id == s && version == v,
        _ => false,
    }
}
