//! The Kafka layer: rdkafka clients built from the plan, every call bounded by a timeout.
