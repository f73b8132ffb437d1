//! The clients of the pair: one [`Cluster`] per cluster of the plan, made once per run or
//! look-up.

use std::time::Duration;

use crate::kafka::{self, Cluster, ClusterSpec, KafkaError};
use crate::plan::{ClusterPlan, Plan, Role};

/// Each librdkafka call is bounded by this, and by the step's deadline around it.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

/// Clients for both clusters of a plan, made once per run.
#[derive(Clone, Debug)]
pub struct Clusters {
    pub primary: Cluster,
    pub dr: Cluster,
}

impl Clusters {
    pub fn from_plan(plan: &Plan) -> Result<Clusters, KafkaError> {
        Ok(Clusters {
            primary: Cluster::new(spec(&plan.primary), OPERATION_TIMEOUT)?,
            dr: Cluster::new(spec(&plan.dr), OPERATION_TIMEOUT)?,
        })
    }

    pub fn get(&self, role: Role) -> &Cluster {
        match role {
            Role::Primary => &self.primary,
            Role::Dr => &self.dr,
        }
    }
}

fn kafka_role(role: Role) -> kafka::ClusterRole {
    match role {
        Role::Primary => kafka::ClusterRole::Primary,
        Role::Dr => kafka::ClusterRole::Dr,
    }
}

fn spec(cluster: &ClusterPlan) -> ClusterSpec {
    let mut spec = ClusterSpec::new(kafka_role(cluster.role), cluster.bootstrap_servers.clone());
    for setting in &cluster.client {
        let property = if setting.secret {
            kafka::ClientProperty::secret(setting.key.clone(), setting.value.clone())
        } else {
            kafka::ClientProperty::new(setting.key.clone(), setting.value.clone())
        };
        spec = spec.with_property(property);
    }
    spec
}
