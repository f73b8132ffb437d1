//! The librdkafka client context: where kdr hears what librdkafka does not return.
//!
//! librdkafka reports connection refusals, TLS/SASL failures and "all brokers down" as
//! events, not as the return value of the call that is waiting for a broker; that call just
//! times out. Recording those events lets an operation say "authentication failed" or
//! "unreachable" early and precisely instead of a bare timeout. Its log lines go to
//! `tracing` with every secret value masked, since librdkafka may quote configuration.

use std::sync::{Mutex, MutexGuard, PoisonError};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};

use super::config::{ClusterRole, Redactor};

/// Events recorded since the client was created.
#[derive(Debug, Default)]
pub(crate) struct Heard {
    /// The TLS or SASL handshake failed (reason already scrubbed).
    pub(crate) authentication: Option<String>,
    /// librdkafka declared every broker connection down. Alone it proves nothing: librdkafka
    /// also counts connections it closes on purpose towards it (a bootstrap connection retired
    /// once the broker's id is known, an idle one); see [`Heard::unreachable`].
    pub(crate) all_brokers_down: bool,
    /// The latest other error event (reason already scrubbed).
    pub(crate) last_error: Option<String>,
    /// The latest connection failure or error-level log line (scrubbed). Some failures,
    /// such as a broker that accepts the connection and never answers, are only logged,
    /// never raised as events with a reason.
    pub(crate) last_logged_failure: Option<String>,
}

impl Heard {
    /// Every broker connection is down and a connection failure was logged (refused, reset,
    /// timed out, unresolvable): the cluster cannot be reached, and no retry within this
    /// operation will change that. Without a logged failure, "all brokers down" is librdkafka
    /// retiring a connection it planned to close, and the operation goes on to its deadline.
    pub(crate) fn unreachable(&self) -> bool {
        self.all_brokers_down && self.last_logged_failure.is_some()
    }
}

/// One per client; a client lives for one operation, so what it heard is about that
/// operation only.
pub(crate) struct KdrContext {
    cluster: ClusterRole,
    redactor: Redactor,
    heard: Mutex<Heard>,
}

impl KdrContext {
    pub(crate) fn new(cluster: ClusterRole, redactor: Redactor) -> Self {
        KdrContext {
            cluster,
            redactor,
            heard: Mutex::new(Heard::default()),
        }
    }

    /// What the client has heard so far. A panic elsewhere cannot make this unusable.
    pub(crate) fn heard(&self) -> MutexGuard<'_, Heard> {
        self.heard.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ClientContext for KdrContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        let message = self.redactor.scrub(log_message);
        let cluster = self.cluster.to_string();
        // "FAIL" lines say why a connection went down (refused, timed out, handshake).
        if fac == "FAIL" || (level as i32) <= (RDKafkaLogLevel::Error as i32) {
            self.heard().last_logged_failure = Some(plain(without_thread_name(&message)));
        }
        // librdkafka's "error" level includes every refused connection, which is the
        // expected state of a dead primary; the operation's result carries the verdict.
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
                tracing::error!(target: "librdkafka", cluster, facility = fac, "{message}")
            }
            RDKafkaLogLevel::Error | RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", cluster, facility = fac, "{message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", cluster, facility = fac, "{message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", cluster, facility = fac, "{message}")
            }
        }
    }

    fn error(&self, error: RdKafkaError, reason: &str) {
        let reason = self.redactor.scrub(reason);
        tracing::debug!(target: "librdkafka", cluster = %self.cluster, "client error event: {reason}");
        let mut heard = self.heard();
        match error.rdkafka_error_code() {
            Some(
                RDKafkaErrorCode::Authentication
                | RDKafkaErrorCode::SaslAuthenticationFailed
                | RDKafkaErrorCode::SSL,
            ) => heard.authentication = Some(reason),
            Some(RDKafkaErrorCode::AllBrokersDown) => heard.all_brokers_down = true,
            _ => heard.last_error = Some(plain(without_thread_name(&reason))),
        }
    }

    fn stats_raw(&self, _statistics: &[u8]) {
        // kdr never enables statistics; the default would parse and log them at info.
    }
}

/// A log line without librdkafka's "[thrd:host:port/id]: " prefix, which means nothing to
/// an operator reading why a cluster is unreachable.
fn without_thread_name(message: &str) -> &str {
    match message
        .strip_prefix("[thrd:")
        .and_then(|rest| rest.split_once("]: "))
    {
        Some((_, text)) => text,
        None => message,
    }
}

/// librdkafka's explanation of a connection that was accepted and then never answered blames a
/// Kafka older than 0.10, which sends an operator at 3 AM down the wrong path: a hung broker, a
/// stopped process or a middlebox swallowing traffic are what it means today.
const SILENT_BROKER_GUESS: &str =
    "probably due to broker version < 0.10 (see api.version.request configuration)";

fn plain(message: &str) -> String {
    message.replace(
        SILENT_BROKER_GUESS,
        "the broker accepted the connection but did not answer (a hung broker, or something in \
         between holding the traffic)",
    )
}

/// Rebalance and commit callbacks stay rdkafka's defaults: kdr never joins a group, and
/// waits for its commits on a queue of its own (see `commit.rs`).
impl ConsumerContext for KdrContext {}

#[cfg(test)]
mod tests {
    #[test]
    fn a_silent_broker_is_not_blamed_on_an_old_kafka_version() {
        let logged = "127.0.0.1:38255/bootstrap: ApiVersionRequest failed: Local: Timed out: probably due to broker version < 0.10 (see api.version.request configuration) (after 5002ms in state APIVERSION_QUERY)";
        assert_eq!(
            super::plain(logged),
            "127.0.0.1:38255/bootstrap: ApiVersionRequest failed: Local: Timed out: the broker accepted the connection but did not answer (a hung broker, or something in between holding the traffic) (after 5002ms in state APIVERSION_QUERY)"
        );
    }

    use std::sync::Arc;

    use super::*;
    use crate::kafka::config::test_support::{
        INLINE_SECRET, SECRET, assert_no_secret, spec_with_secrets,
    };

    /// Collects formatted tracing output.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn librdkafka_log_lines_and_errors_are_scrubbed() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let context = KdrContext::new(ClusterRole::Dr, spec_with_secrets("broker:9092").redactor());
        tracing::subscriber::with_default(subscriber, || {
            let conf = format!("sasl.username = {SECRET}, sasl.password = {INLINE_SECRET}");
            context.log(RDKafkaLogLevel::Debug, "CONF", &conf);
            context.log(
                RDKafkaLogLevel::Warning,
                "FAIL",
                &format!("[thrd:b:9092/1]: b:9092/1: auth failed for {SECRET}"),
            );
            context.error(
                RdKafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure),
                &format!("broker said {SECRET}"),
            );
        });
        let output = String::from_utf8(
            captured
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
        .expect("utf-8");
        assert_no_secret(&output);
        assert!(
            output.contains("sasl.username = ***, sasl.password = ***"),
            "{output}"
        );
        assert!(output.contains("cluster=\"dr\""), "{output}");
        let heard = context.heard();
        assert_eq!(heard.last_error.as_deref(), Some("broker said ***"));
        assert_eq!(
            heard.last_logged_failure.as_deref(),
            Some("b:9092/1: auth failed for ***")
        );
    }

    #[test]
    fn handshake_failures_and_all_brokers_down_are_remembered() {
        let context = KdrContext::new(ClusterRole::Primary, Redactor::default());
        context.error(
            RdKafkaError::Global(RDKafkaErrorCode::Authentication),
            "SASL authentication error",
        );
        context.error(
            RdKafkaError::Global(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down",
        );
        let heard = context.heard();
        assert_eq!(
            heard.authentication.as_deref(),
            Some("SASL authentication error")
        );
        assert!(heard.all_brokers_down);
        assert_eq!(heard.last_error, None);
    }

    /// "All brokers down" with no connection failure logged is librdkafka retiring its
    /// bootstrap connection (seen in CI: a declare failed as unreachable on a healthy broker);
    /// with a refused connection logged, it is the cluster gone.
    #[test]
    fn all_brokers_down_makes_a_cluster_unreachable_only_with_a_logged_failure() {
        let context = KdrContext::new(ClusterRole::Primary, Redactor::default());
        context.error(
            RdKafkaError::Global(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down",
        );
        assert!(!context.heard().unreachable());
        context.log(
            RDKafkaLogLevel::Error,
            "FAIL",
            "[thrd:127.0.0.1:9/bootstrap]: 127.0.0.1:9/bootstrap: Connect to ipv4#127.0.0.1:9 failed: Connection refused (after 0ms in state CONNECT)",
        );
        assert!(context.heard().unreachable());
    }
}
