//! The audit log of the widget service: a process application (`Auditor`) that keeps, for each
//! endpoint, an `AuditLog` aggregate of its renames. Its events and its tracking position commit
//! together, so every rename is audited exactly once. Shared by `widget_projections` and the
//! conformance suite.

use eventsourcing::prelude::*;
use eventsourcing::{BoxError, Codec, Outbox, Process, StoredEvent};

use super::widget::WidgetRegistryEndpointEvent;

/// The audit log of one endpoint's renames.
#[derive(Aggregate, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct AuditLog {
    meta: Meta<Self>,
    pub(crate) endpoint: Uuid,
    pub(crate) renames: Vec<String>,
}

#[events]
impl AuditLog {
    #[event("AuditStarted")]
    pub(crate) fn start(endpoint: Uuid) -> Self {
        Self {
            meta: Meta::default(),
            endpoint,
            renames: vec![],
        }
    }

    #[event("RenameAudited")]
    pub(crate) fn audit(&mut self, name: String) {
        self.renames.push(name);
    }
}

/// The id of the audit log of `endpoint`.
pub(crate) fn audit_log_id(endpoint: Uuid) -> Uuid {
    eventsourcing::id_from_name(&format!("audit/{endpoint}"))
}

/// The process application that writes the audit logs.
#[derive(Debug, Default)]
pub(crate) struct Auditor {
    /// A name this auditor refuses (its handler fails on it): for showing the failure policy.
    pub(crate) fail_on: Option<String>,
}

impl Process for Auditor {
    fn name(&self) -> &str {
        "auditor"
    }

    fn event_types(&self) -> Option<Vec<String>> {
        Some(vec!["NameUpdated".into()])
    }

    async fn handle<S: EventStore, C: Codec>(
        &mut self,
        event: &StoredEvent,
        out: &mut Outbox<'_, S, C>,
    ) -> Result<(), BoxError> {
        let WidgetRegistryEndpointEvent::NameUpdated { name } =
            event.decode::<WidgetRegistryEndpointEvent, _>(out.app().codec())?
        else {
            return Ok(());
        };
        if self.fail_on.as_deref() == Some(name.as_str()) {
            return Err(format!("cannot audit the name {name:?}").into());
        }
        let id = audit_log_id(event.stream_id);
        let mut log = match out.app().repository().get::<AuditLog>(id).await {
            Ok(log) => log,
            Err(e) if e.is_not_found() => AuditLog::start_with_id(id, event.stream_id),
            Err(e) => return Err(e.into()),
        };
        log.audit(name);
        out.save(&mut log)?;
        Ok(())
    }
}
