//! Moves the operator asks for (`POST /routes/{cidr}/failover`): one CIDR
//! off the host its routes point at, now. A request holds until a pass has
//! planned and written with it; the CIDR then stays where it went (the
//! spread is sticky).

use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use tokio::sync::watch;

/// CIDR -> the host it is asked off.
pub type MoveOff = BTreeMap<IpNet, IpAddr>;

/// Requests waiting at once: each is a CIDR of the spec.
const MAX_PENDING: usize = 1024;

/// The requests not yet acted on, shared by the HTTP handler that takes
/// them and the reconciler that carries them out.
#[derive(Clone)]
pub struct MoveRequests(Arc<watch::Sender<MoveOff>>);

impl Default for MoveRequests {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(MoveOff::new())))
    }
}

impl MoveRequests {
    /// Ask `cidr` off `host`; refused while [`MAX_PENDING`] others wait.
    pub fn ask(&self, cidr: IpNet, host: IpAddr) -> Result<(), String> {
        let mut full = false;
        self.0.send_modify(|pending| {
            full = pending.len() >= MAX_PENDING && !pending.contains_key(&cidr);
            if !full {
                pending.insert(cidr, host);
            }
        });
        match full {
            true => Err(format!("{MAX_PENDING} moves wait already; try again")),
            false => Ok(()),
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<MoveOff> {
        self.0.subscribe()
    }

    pub fn pending(&self) -> MoveOff {
        self.0.borrow().clone()
    }

    /// A pass planned and wrote with `acted`: those requests are done (one
    /// asked again meanwhile, off another host, waits).
    pub fn done(&self, acted: &MoveOff) {
        self.0.send_if_modified(|pending| {
            let before = pending.len();
            pending.retain(|cidr, host| acted.get(cidr) != Some(host));
            pending.len() != before
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_holds_until_a_pass_acted_on_it_and_waiting_ones_are_bounded() {
        let moves = MoveRequests::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let cidr: IpNet = "10.55.0.0/16".parse().unwrap();
        moves.ask(cidr, a).unwrap();
        let acted = moves.pending();
        moves.ask(cidr, b).unwrap();
        moves.done(&acted);
        assert_eq!(
            moves.pending(),
            MoveOff::from([(cidr, b)]),
            "asked again: waits"
        );
        moves.done(&moves.pending());
        assert!(moves.pending().is_empty());
        for i in 0..MAX_PENDING as u32 {
            let cidr = IpNet::new(IpAddr::from(i.to_be_bytes()), 32).unwrap();
            moves.ask(cidr, a).unwrap();
        }
        assert!(moves.ask(cidr, a).is_err());
    }
}
