//! The disaster of the disaster scenario: the primary's data centre goes dark right after the
//! declaration, wherever the plan puts its declare step.

use std::sync::{Arc, Mutex, PoisonError};

use super::DrillError;
use crate::journal::{Event, EventBody};
use crate::plan::{Direction, Plan, StepKind};
use crate::rehearsal::{EmbeddedWorld, Role, WorldError};

/// The failover's declare step (1-based, as the run numbers it): the moment the disaster
/// strikes. A plan without one cannot be rehearsed as a disaster.
pub(super) fn declaration_step(plan: &Plan) -> Result<usize, DrillError> {
    plan.steps(Direction::Failover)
        .iter()
        .find(|step| matches!(step.kind, StepKind::Declare(_)))
        .map(|step| step.index)
        .ok_or_else(|| DrillError::Unsuitable {
            plan: plan.name.clone(),
            why: "the disaster scenario takes the primary down right after the declaration, \
                  and the failover has no declare step"
                .to_owned(),
        })
}

pub(super) type Strike = Box<dyn Fn() -> Result<(), WorldError> + Send + Sync>;

/// Watches the failover's events and strikes when the declare step finishes. A strike that
/// fails is kept, so the drill can refuse to call what ran a disaster.
pub(super) struct Disaster {
    declaration: usize,
    strike: Strike,
    failed: Mutex<Option<WorldError>>,
}

impl Disaster {
    /// Takes the world's primary down after the plan's declaration.
    pub(super) fn new(plan: &Plan, world: &Arc<EmbeddedWorld>) -> Result<Arc<Self>, DrillError> {
        let world = Arc::clone(world);
        let strike = Box::new(move || world.cluster_down(Role::Primary));
        Ok(Arc::new(Self::with_strike(declaration_step(plan)?, strike)))
    }

    pub(super) fn with_strike(declaration: usize, strike: Strike) -> Self {
        Disaster {
            declaration,
            strike,
            failed: Mutex::new(None),
        }
    }

    /// Called with every event of the failover as it is recorded.
    pub(super) fn on_event(&self, event: &Event) {
        if let EventBody::StepFinished { step, .. } = &event.body
            && *step == self.declaration
            && let Err(error) = (self.strike)()
        {
            *self.failed.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
        }
    }

    /// Err when the primary could not be taken down: the "disaster" ran with the primary up.
    pub(super) fn outcome(&self) -> Result<(), DrillError> {
        match self
            .failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            Some(error) => Err(DrillError::Disaster(error)),
            None => Ok(()),
        }
    }
}
