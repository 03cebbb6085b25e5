//! Control socket families: requests over `control.socket` (`ftpsgate ctl`),
//! by command and result. Recorded by `ctl.rs`; the command label is a closed
//! set ([`ControlCommand`]), never the session id or backend name asked for.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::{ok_label, Metrics};

/// What a control request asked for: the `command` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlCommand {
    /// `sessions`.
    Sessions,
    /// `kill`.
    Kill,
    /// `backend disable`.
    BackendDisable,
    /// `backend enable`.
    BackendEnable,
    /// `backend drain`.
    BackendDrain,
    /// `pinholes`.
    Pinholes,
    /// `reload`.
    Reload,
    /// A line that is not a request.
    Invalid,
}

impl ControlCommand {
    /// The `command` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ControlCommand::Sessions => "sessions",
            ControlCommand::Kill => "kill",
            ControlCommand::BackendDisable => "backend_disable",
            ControlCommand::BackendEnable => "backend_enable",
            ControlCommand::BackendDrain => "backend_drain",
            ControlCommand::Pinholes => "pinholes",
            ControlCommand::Reload => "reload",
            ControlCommand::Invalid => "invalid",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    command: &'static str,
    result: &'static str,
}

/// The control area's family handles (the registry holds clones).
#[derive(Debug)]
pub(super) struct Families {
    requests: Family<RequestLabels, Counter>,
}

impl Families {
    pub(super) fn register(r: &mut Registry) -> Families {
        let f = Families {
            requests: Family::default(),
        };
        r.register(
            "control_requests",
            "Requests over the control socket, by command and result",
            f.requests.clone(),
        );
        f
    }
}

impl Metrics {
    /// `ftpsgate_control_requests_total{command, result}`.
    pub fn control_request(&self, command: ControlCommand, ok: bool) {
        self.control
            .requests
            .get_or_create(&RequestLabels {
                command: command.as_str(),
                result: ok_label(ok),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::super::sample;
    use super::*;

    #[test]
    fn requests_are_counted_by_command_and_result() {
        let m = Metrics::new();
        m.control_request(ControlCommand::Kill, true);
        m.control_request(ControlCommand::Kill, true);
        m.control_request(ControlCommand::Reload, false);
        let text = m.encode();
        assert_eq!(
            sample(
                &text,
                "ftpsgate_control_requests_total{command=\"kill\",result=\"ok\"}"
            ),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                "ftpsgate_control_requests_total{command=\"reload\",result=\"failed\"}"
            ),
            Some(1.0),
            "{text}"
        );
    }
}
