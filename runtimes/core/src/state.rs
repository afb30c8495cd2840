//! The container lifecycle as a plain enum: one method per transition, each rejecting what
//! does not fit the current state with a clear error.

use crate::{Exit, RuntimeError};

/// Where a container is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContainerState {
    /// Created, not started.
    Created,
    /// Running.
    Running,
    /// Ended.
    Exited(Exit),
}

impl ContainerState {
    /// A short name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            ContainerState::Created => "created",
            ContainerState::Running => "running",
            ContainerState::Exited(_) => "exited",
        }
    }
}

/// A container's state with checked transitions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lifecycle {
    id: String,
    state: ContainerState,
}

impl Lifecycle {
    /// A new, created container.
    pub fn new(id: &str) -> Lifecycle {
        Lifecycle {
            id: id.to_owned(),
            state: ContainerState::Created,
        }
    }

    /// The current state.
    pub fn state(&self) -> &ContainerState {
        &self.state
    }

    fn invalid(&self, operation: &'static str) -> RuntimeError {
        RuntimeError::InvalidState {
            id: self.id.clone(),
            state: self.state.name(),
            operation,
        }
    }

    /// Created → Running.
    pub fn start(&mut self) -> Result<(), RuntimeError> {
        match self.state {
            ContainerState::Created => {
                self.state = ContainerState::Running;
                Ok(())
            }
            _ => Err(self.invalid("start")),
        }
    }

    /// Running (or Created, if it never started) → Exited. Exiting twice keeps the first exit.
    pub fn exit(&mut self, exit: Exit) {
        if !matches!(self.state, ContainerState::Exited(_)) {
            self.state = ContainerState::Exited(exit);
        }
    }

    /// Whether a signal may be sent: only to a running container.
    pub fn check_signal(&self) -> Result<(), RuntimeError> {
        self.check_running("signal")
    }

    /// `InvalidState` for `operation` (exec, attach, ...) unless the container runs.
    pub fn check_running(&self, operation: &'static str) -> Result<(), RuntimeError> {
        match self.state {
            ContainerState::Running => Ok(()),
            _ => Err(self.invalid(operation)),
        }
    }

    /// Waits until the container watched by `life` has exited, and returns how; `None` when
    /// its record went away first (the sender was dropped).
    pub async fn exited(mut life: tokio::sync::watch::Receiver<Lifecycle>) -> Option<Exit> {
        let life = life
            .wait_for(|life| matches!(life.state, ContainerState::Exited(_)))
            .await
            .ok()?;
        match &life.state {
            ContainerState::Exited(exit) => Some(exit.clone()),
            _ => None,
        }
    }

    /// Whether the container may be removed: not while it runs.
    pub fn check_delete(&self) -> Result<(), RuntimeError> {
        match self.state {
            ContainerState::Running => Err(self.invalid("delete")),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn exit(code: i32) -> Exit {
        Exit {
            code,
            reason: "Completed".into(),
            message: None,
            finished_at: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn a_container_starts_once_and_exits_once() {
        let mut life = Lifecycle::new("c");
        assert!(life.check_signal().is_err());
        life.start().unwrap();
        assert!(life.check_delete().is_err());
        assert!(life.start().is_err());
        life.check_signal().unwrap();
        life.exit(exit(3));
        life.exit(exit(9));
        assert_eq!(life.state(), &ContainerState::Exited(exit(3)));
        assert!(life.check_signal().is_err());
        life.check_delete().unwrap();
        let err = life.start().unwrap_err();
        assert_eq!(err.to_string(), "container \"c\" is exited: cannot start");
    }
}
