//! The producer threads: rate-limited writes that follow the indirection and pause files,
//! every acknowledgement recorded in the ledger.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::message::{DeliveryResult, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};

use super::{PRODUCER_HEADER, ProducedRecord, SEQ_HEADER, Shared, lock, now_us};
use crate::rehearsal::client::{self, sleep_unless};

/// Producer context: acknowledged records go straight into the ledger.
struct LedgerContext {
    shared: Arc<Shared>,
    cluster: String,
    producer: u32,
}

impl ClientContext for LedgerContext {}

impl ProducerContext for LedgerContext {
    type DeliveryOpaque = Box<(u64, u64)>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent: Box<(u64, u64)>) {
        let (seq, sent_at_us) = *sent;
        match result {
            Ok(message) => {
                lock(&self.shared.ledger).produced.push(ProducedRecord {
                    cluster: self.cluster.clone(),
                    topic: message.topic().to_owned(),
                    partition: message.partition(),
                    offset: message.offset(),
                    seq,
                    producer: self.producer,
                    sent_at_us,
                    acked_at_us: now_us(),
                });
                lock(&self.shared.stats).acknowledged += 1;
            }
            Err((error, _)) => {
                self.shared.failed(sent_at_us);
                let mut stats = lock(&self.shared.stats);
                stats.produce_failed += 1;
                stats.errors += 1;
                stats.last_error = Some(format!("produce: {error}"));
            }
        }
    }
}

pub(super) struct ProducerLoop {
    id: u32,
    shared: Arc<Shared>,
    current: Option<(String, BaseProducer<LedgerContext>)>,
    paused: bool,
}

impl ProducerLoop {
    pub(super) fn new(id: u32, shared: Arc<Shared>) -> Self {
        Self {
            id,
            shared,
            current: None,
            paused: false,
        }
    }

    pub(super) fn run(mut self) {
        let config = self.shared.config.clone();
        let rate = f64::from(config.rate_per_sec) / f64::from(config.producers.max(1));
        // At most this many records at once, so a stall is not followed by a burst.
        let max_burst = (rate / 10.0).max(1.0);
        let mut window = Instant::now();
        let mut sent_in_window = 0.0_f64;
        let mut next_check = Instant::now();
        while !self.shared.stopping() {
            if Instant::now() >= next_check {
                self.follow_indirection();
                self.paused = config.pause_file.exists();
                next_check = Instant::now() + config.check_interval;
            }
            let Some((_, producer)) = &self.current else {
                self.set_paused_stat(false);
                sleep_unless(config.check_interval, || self.shared.stopping());
                window = Instant::now();
                sent_in_window = 0.0;
                continue;
            };
            producer.poll(Duration::ZERO);
            if self.paused || rate <= 0.0 {
                let drained = producer.in_flight_count() == 0;
                self.set_paused_stat(self.paused && drained);
                sleep_unless(config.check_interval.min(Duration::from_millis(5)), || {
                    self.shared.stopping()
                });
                window = Instant::now();
                sent_in_window = 0.0;
                continue;
            }
            self.set_paused_stat(false);
            let due = (window.elapsed().as_secs_f64() * rate - sent_in_window).min(max_burst);
            let mut sent = 0.0;
            while sent + 1.0 <= due {
                self.send_one(producer);
                sent += 1.0;
            }
            sent_in_window += sent;
            if sent_in_window > rate * 10.0 {
                // Keep the float arithmetic exact over long runs.
                window = Instant::now();
                sent_in_window = 0.0;
            }
            let gap = Duration::from_secs_f64((1.0 / rate).min(1.0));
            sleep_unless(gap.min(config.check_interval), || self.shared.stopping());
        }
        if let Some((_, producer)) = self.current.take()
            && producer.flush(Duration::from_secs(2)).is_err()
        {
            self.shared
                .error("flush at stop", "records still in flight");
        }
    }

    fn set_paused_stat(&self, paused: bool) {
        if let Some(flag) = lock(&self.shared.stats)
            .producer_paused
            .get_mut(self.id as usize)
        {
            *flag = paused;
        }
    }

    /// Moves to the cluster named in the indirection file, if it changed: flushes the old
    /// producer (bounded; records it cannot deliver are not acknowledged, so not in the
    /// ledger) and connects a new one.
    fn follow_indirection(&mut self) {
        let wanted = self.shared.active_cluster();
        if self.current.as_ref().map(|(b, _)| b) == wanted.as_ref() {
            return;
        }
        if let Some((_, old)) = self.current.take() {
            let _ = old.flush(Duration::from_secs(1));
        }
        let Some(bootstrap) = wanted else {
            lock(&self.shared.stats).producer_clusters[self.id as usize] = None;
            return;
        };
        let label = self.shared.config.label(&bootstrap);
        let context = LedgerContext {
            shared: Arc::clone(&self.shared),
            cluster: label.clone(),
            producer: self.id,
        };
        let created = client::base_config(&bootstrap, &format!("kdr-workload-{}", self.id))
            .set("enable.idempotence", "true")
            .set("linger.ms", "2")
            .set(
                "message.timeout.ms",
                self.shared
                    .config
                    .delivery_timeout
                    .as_millis()
                    .max(1)
                    .to_string(),
            )
            .create_with_context(context);
        match created {
            Ok(producer) => {
                lock(&self.shared.stats).producer_clusters[self.id as usize] = Some(label);
                self.current = Some((bootstrap, producer));
            }
            Err(error) => self.shared.error("create a producer", error),
        }
    }

    fn send_one(&self, producer: &BaseProducer<LedgerContext>) {
        let config = &self.shared.config;
        if config.topics.is_empty() {
            return;
        }
        let seq = self.shared.seq.fetch_add(1, Ordering::Relaxed);
        let topic_index = usize::try_from(seq % config.topics.len() as u64).unwrap_or(0);
        let topic = &config.topics[topic_index];
        let key = format!("key-{}", seq % u64::from(config.keys.max(1)));
        let value = format!("seq={seq} producer={}", self.id);
        let seq_text = seq.to_string();
        let producer_text = self.id.to_string();
        let headers = OwnedHeaders::new_with_capacity(2)
            .insert(Header {
                key: SEQ_HEADER,
                value: Some(seq_text.as_bytes()),
            })
            .insert(Header {
                key: PRODUCER_HEADER,
                value: Some(producer_text.as_bytes()),
            });
        let sent_at_us = now_us();
        let record = BaseRecord::with_opaque_to(topic, Box::new((seq, sent_at_us)))
            .key(&key)
            .payload(&value)
            .headers(headers);
        if let Err((error, _)) = producer.send(record) {
            self.shared.failed(sent_at_us);
            let mut stats = lock(&self.shared.stats);
            stats.produce_failed += 1;
            stats.errors += 1;
            stats.last_error = Some(format!("produce: {error}"));
        }
    }
}
