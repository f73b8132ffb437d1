//! [`Cluster::produce_one`]: one record written and acknowledged, under the same bound as
//! every other operation.

use std::sync::Mutex;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

use super::bound::{Answer, Bound, off_thread};
use super::cluster::Cluster;
use super::context::KdrContext;
use super::error::{KafkaError, Operation};
use super::scope::Scope;
use super::session::POLL_STEP;

/// What a delivery report says: the record's offset, or librdkafka's reason.
type Delivery = Result<i64, String>;

impl Cluster {
    /// Write one record to partition 0 of `topic` and wait for the cluster to acknowledge it
    /// (`acks=all`). Returns its offset. kdr writes only its own small records this
    /// way (write authority); it never produces to users' topics.
    pub async fn produce_one(
        &self,
        topic: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<i64, KafkaError> {
        self.produce_one_with(topic, key, value, false).await
    }

    /// [`Cluster::produce_one`] with an idempotent producer: a send librdkafka retries is
    /// written once. It costs a producer id from the cluster first (about half a second on a
    /// fresh connection), so kdr pays it only for write-authority claims.
    pub async fn produce_one_idempotent(
        &self,
        topic: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<i64, KafkaError> {
        self.produce_one_with(topic, key, value, true).await
    }

    async fn produce_one_with(
        &self,
        topic: &str,
        key: &[u8],
        value: &[u8],
        idempotent: bool,
    ) -> Result<i64, KafkaError> {
        let operation = Operation::Produce {
            topic: topic.to_owned(),
        };
        let timeout = self.operation_timeout();
        let scope = self.scope(operation, timeout);
        let bound = Bound::new(timeout, None, Instant::now());
        let mut config = self.spec().producer_config(timeout);
        config
            .set("acks", "all")
            .set("enable.idempotence", idempotent.to_string())
            .set("message.timeout.ms", timeout.as_millis().to_string())
            .set("linger.ms", "0");
        let record = Record {
            topic: topic.to_owned(),
            key: key.to_vec(),
            value: value.to_vec(),
        };
        let working = scope.clone();
        off_thread(&scope, bound, move |answer| {
            produce(&config, &working, bound, &record, answer);
        })
        .await
    }
}

/// The record [`Cluster::produce_one`] writes, owned for its blocking thread.
struct Record {
    topic: String,
    key: Vec<u8>,
    value: Vec<u8>,
}

/// The blocking side: a producer for this one record, its delivery report awaited until
/// the bound's deadline. The answer goes back before the producer is torn down, which can
/// take a while on a dead cluster.
fn produce(
    config: &ClientConfig,
    scope: &Scope,
    bound: Bound,
    record: &Record,
    answer: Answer<i64>,
) {
    let (tx, rx) = channel::<Delivery>();
    let context = DeliveryContext {
        delivered: Mutex::new(tx),
        events: KdrContext::new(scope.cluster, scope.redactor.clone()),
    };
    let producer: ThreadedProducer<DeliveryContext> = match config.create_with_context(context) {
        Ok(producer) => producer,
        Err(error) => {
            let _ = answer.send(Err(scope.config_error(&error)));
            return;
        }
    };
    if config.get("enable.idempotence") == Some("true") {
        ask_for_producer_id(&producer, &record.topic, bound);
    }
    let _ = answer.send(deliver(&producer, &rx, scope, bound, record));
    drop(producer);
}

/// Gets librdkafka to ask for the idempotent producer's id now rather than half a second
/// from now. librdkafka asks when a metadata answer comes from a broker it learned of (not the
/// bootstrap connection), or else on a 500 ms timer started with the producer; the first
/// answer comes from the bootstrap connection, so every claim of write authority waited that
/// timer out (`make bench-engine`: 500-600 ms of each failover's declaration). The topic's
/// metadata is asked until a learned broker answers, a few times at most; a failure here is
/// left for the send to report.
fn ask_for_producer_id(producer: &ThreadedProducer<DeliveryContext>, topic: &str, bound: Bound) {
    for _ in 0..METADATA_TRIES {
        let remaining = bound.remaining(Instant::now());
        match producer.client().fetch_metadata(Some(topic), remaining) {
            Ok(metadata) if metadata.orig_broker_id() < 0 && !remaining.is_zero() => continue,
            _ => return,
        }
    }
}

/// How many metadata answers [`ask_for_producer_id`] waits for at most.
const METADATA_TRIES: usize = 5;

/// Sends the record and turns its delivery report (or the lack of one) into the answer.
fn deliver(
    producer: &ThreadedProducer<DeliveryContext>,
    delivered: &Receiver<Delivery>,
    scope: &Scope,
    bound: Bound,
    record: &Record,
) -> Result<i64, KafkaError> {
    let sent = BaseRecord::to(&record.topic)
        .partition(0)
        .key(&record.key)
        .payload(&record.value);
    if let Err((error, _)) = producer.send(sent) {
        return Err(scope.client(error));
    }
    let report = delivery_report(producer, delivered, bound);
    let refused = producer.context().events.heard().authentication.clone();
    // Do not let a dead cluster hold the thread on drop.
    let _ = producer.flush(Duration::from_millis(100));
    match (report, refused) {
        (Some(Ok(offset)), _) => Ok(offset),
        (_, Some(detail)) => Err(KafkaError::Authentication {
            cluster: scope.cluster,
            operation: scope.operation.clone(),
            detail,
        }),
        (Some(Err(detail)), None) => Err(scope.client(detail)),
        (None, None) => Err(scope.timeout(None)),
    }
}

/// The delivery report, unless the TLS or SASL handshake is refused first: librdkafka
/// reports that as an error event and keeps retrying, so the record would only fail when
/// its timeout (the whole bound) runs out. `None` when the deadline came first.
fn delivery_report(
    producer: &ThreadedProducer<DeliveryContext>,
    delivered: &Receiver<Delivery>,
    bound: Bound,
) -> Option<Delivery> {
    loop {
        let remaining = bound.remaining(Instant::now());
        match delivered.recv_timeout(remaining.min(POLL_STEP)) {
            Ok(answer) => return Some(answer),
            Err(RecvTimeoutError::Timeout) if !remaining.is_zero() => {
                if let Some(detail) = producer.context().events.heard().authentication.clone() {
                    return Some(Err(detail));
                }
            }
            Err(_) => return None,
        }
    }
}

/// Hands the one delivery report of [`Cluster::produce_one`] back to the waiting thread, and
/// hears librdkafka's events and log lines as every other client does: masked, and with a
/// refused handshake recorded.
struct DeliveryContext {
    delivered: Mutex<Sender<Delivery>>,
    events: KdrContext,
}

impl rdkafka::ClientContext for DeliveryContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.events.log(level, fac, log_message);
    }

    fn error(&self, error: RdKafkaError, reason: &str) {
        self.events.error(error, reason);
    }

    fn stats_raw(&self, statistics: &[u8]) {
        self.events.stats_raw(statistics);
    }
}

impl rdkafka::producer::ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        use rdkafka::Message;
        let answer = match result {
            Ok(message) => Ok(message.offset()),
            Err((error, _)) => Err(error.to_string()),
        };
        if let Ok(tx) = self.delivered.lock() {
            let _ = tx.send(answer);
        }
    }
}
