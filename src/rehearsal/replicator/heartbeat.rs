//! The heartbeat loop: the `MirrorHeartbeatConnector` of both herders of a cluster pair
//! (SPEC §1). The `S->T` herder writes `Heartbeat(S, T)` into T's `heartbeats`; the
//! `T->S` herder, which MM2 runs even when that flow is disabled, writes
//! `Heartbeat(T, S)` into S's `heartbeats`, which the copy loop then replicates to T as
//! `S.heartbeats`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::{ReplicatorConfig, ReplicatorError, Shared};
use crate::mm2::Heartbeat;
use crate::rehearsal::client::{self, DeliveryCounter, now_ms, sleep_unless};

pub(super) struct HeartbeatTask {
    config: ReplicatorConfig,
    shared: Arc<Shared>,
    to_target: BaseProducer<DeliveryCounter>,
    to_source: BaseProducer<DeliveryCounter>,
}

fn producer(
    bootstrap_servers: &str,
    client_id: &str,
) -> Result<BaseProducer<DeliveryCounter>, KafkaError> {
    client::base_config(bootstrap_servers, client_id)
        .set("linger.ms", "0")
        // A heartbeat older than a few intervals is worthless; do not queue them up
        // while a cluster is down.
        .set("message.timeout.ms", "5000")
        .create_with_context(DeliveryCounter::default())
}

impl HeartbeatTask {
    pub(super) fn new(
        config: ReplicatorConfig,
        shared: Arc<Shared>,
    ) -> Result<Self, ReplicatorError> {
        let flow = format!(
            "kdr-mm2-{}-{}-heartbeats",
            config.source.alias, config.target.alias
        );
        let to_target = producer(&config.target.bootstrap_servers, &flow).map_err(|source| {
            ReplicatorError::Client {
                what: "target heartbeats producer",
                source,
            }
        })?;
        let to_source = producer(&config.source.bootstrap_servers, &flow).map_err(|source| {
            ReplicatorError::Client {
                what: "source heartbeats producer",
                source,
            }
        })?;
        Ok(Self {
            config,
            shared,
            to_target,
            to_source,
        })
    }

    pub(super) fn run(self) {
        let mut next_beat = Instant::now();
        let mut counted = 0;
        while !self.shared.stopping() {
            if Instant::now() >= next_beat {
                if !self.shared.all_paused() {
                    self.beat();
                }
                next_beat = Instant::now() + self.config.heartbeat_interval;
            }
            self.to_target.poll(Duration::ZERO);
            self.to_source.poll(Duration::ZERO);
            let delivered = self.to_target.context().delivered.load(Ordering::Relaxed)
                + self.to_source.context().delivered.load(Ordering::Relaxed);
            if delivered != counted {
                self.shared.stats().heartbeats_written += delivered - counted;
                counted = delivered;
            }
            let until_next = next_beat.saturating_duration_since(Instant::now());
            sleep_unless(until_next.min(Duration::from_millis(20)), || {
                self.shared.stopping()
            });
        }
    }

    fn beat(&self) {
        let topic = self.config.policy.heartbeats_topic();
        let (source, target) = (&self.config.source.alias, &self.config.target.alias);
        let now = now_ms();
        if self.config.emit_heartbeats {
            self.send(&self.to_target, topic, source, target, now);
        }
        if self.config.emit_reverse_heartbeats {
            self.send(&self.to_source, topic, target, source, now);
        }
    }

    fn send(
        &self,
        producer: &BaseProducer<DeliveryCounter>,
        topic: &str,
        source_alias: &str,
        target_alias: &str,
        now: i64,
    ) {
        let beat = Heartbeat {
            source_alias: source_alias.to_owned(),
            target_alias: target_alias.to_owned(),
            timestamp_ms: now,
        };
        let Ok(key) = beat.encode_key() else {
            self.shared.error("encode a heartbeat", "alias too long");
            return;
        };
        let value = beat.encode_value();
        let record = BaseRecord::to(topic)
            .partition(0)
            .key(&key)
            .payload(&value)
            .timestamp(now);
        if let Err((error, _)) = producer.send(record) {
            self.shared.error("write a heartbeat", error);
        }
    }
}
