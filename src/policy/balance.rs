//! Backend selection: in which order a session tries a route's candidate
//! backends. Pure — the caller ([`crate::backend::pool`]) reads the run-time
//! facts (sessions in use, health, the route's round-robin cursor) and passes
//! them in; this function only decides. A new balancing algorithm is a new
//! [`Balance`] variant in `config` and an arm in [`order`], nothing else.
//!
//! The rules, in order:
//! 1. the balancing policy orders the candidates (round robin rotates the
//!    configured order by the cursor; least connections sorts by sessions in
//!    use, ties in configured order);
//! 2. backends known to be unhealthy go last, keeping that order among the
//!    healthy and among the unhealthy (a backend without a health check counts
//!    as healthy): they are still tried when nothing else answers;
//! 3. backends an operator disabled or is draining (`ftpsgate ctl backend
//!    disable|drain`) are left out: no new session chooses them, even when
//!    nothing else answers.

use crate::config::Balance;

/// What the balancer knows about one candidate backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Sessions currently using it.
    pub in_use: usize,
    /// Its last health-check verdict; `None` when it is not checked.
    pub healthy: Option<bool>,
    /// False when an operator disabled or drains it: not tried at all.
    pub accepting: bool,
}

/// The order in which to try `candidates` (indexes into it; every accepting
/// candidate appears once, the others not at all). `cursor` is the route's round-robin counter value for this
/// session (ignored by the other policies).
pub fn order(balance: Balance, candidates: &[Candidate], cursor: usize) -> Vec<usize> {
    let n = candidates.len();
    let mut idx: Vec<usize> = (0..n).collect();
    if n > 1 {
        match balance {
            Balance::RoundRobin => idx.rotate_left(cursor % n),
            Balance::LeastConnections => idx.sort_by_key(|&i| candidates[i].in_use),
        }
    }
    // `sort_by_key` is stable: the policy's order holds within each group.
    idx.sort_by_key(|&i| candidates[i].healthy == Some(false));
    idx.retain(|&i| candidates[i].accepting);
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(in_use: usize, healthy: Option<bool>) -> Candidate {
        Candidate {
            in_use,
            healthy,
            accepting: true,
        }
    }

    fn off(mut c: Candidate) -> Candidate {
        c.accepting = false;
        c
    }

    #[test]
    fn disabled_and_draining_are_left_out_keeping_the_order() {
        let cands = [c(0, None), off(c(0, None)), c(0, Some(false)), c(0, None)];
        assert_eq!(order(Balance::RoundRobin, &cands, 0), [0, 3, 2]);
        assert_eq!(order(Balance::RoundRobin, &cands, 1), [3, 0, 2]);
        // The rotation still counts the left-out one's place.
        assert_eq!(order(Balance::RoundRobin, &cands, 2), [3, 0, 2]);
        let cands = [off(c(0, Some(true))), c(4, None), c(2, None)];
        assert_eq!(order(Balance::LeastConnections, &cands, 0), [2, 1]);
    }

    #[test]
    fn nothing_to_try_when_every_candidate_is_out() {
        let cands = [off(c(0, None)), off(c(1, Some(true)))];
        assert!(order(Balance::RoundRobin, &cands, 0).is_empty());
        assert!(order(Balance::LeastConnections, &cands, 0).is_empty());
    }

    #[test]
    fn round_robin_rotates_by_the_cursor() {
        let cands = [c(0, None), c(0, None), c(0, None)];
        assert_eq!(order(Balance::RoundRobin, &cands, 0), [0, 1, 2]);
        assert_eq!(order(Balance::RoundRobin, &cands, 1), [1, 2, 0]);
        assert_eq!(order(Balance::RoundRobin, &cands, 2), [2, 0, 1]);
        assert_eq!(order(Balance::RoundRobin, &cands, 3), [0, 1, 2]);
        // The cursor may have wrapped around usize.
        assert_eq!(order(Balance::RoundRobin, &cands, usize::MAX), [0, 1, 2]);
    }

    #[test]
    fn least_connections_sorts_by_use_ties_in_configured_order() {
        let cands = [c(3, None), c(1, None), c(2, None), c(1, None)];
        assert_eq!(order(Balance::LeastConnections, &cands, 7), [1, 3, 2, 0]);
    }

    #[test]
    fn unhealthy_go_last_keeping_the_policy_order() {
        let cands = [
            c(0, Some(false)),
            c(0, Some(true)),
            c(0, None),
            c(0, Some(false)),
        ];
        assert_eq!(order(Balance::RoundRobin, &cands, 0), [1, 2, 0, 3]);
        assert_eq!(order(Balance::RoundRobin, &cands, 3), [1, 2, 3, 0]);
        let cands = [c(0, Some(false)), c(5, Some(true)), c(1, Some(true))];
        assert_eq!(order(Balance::LeastConnections, &cands, 0), [2, 1, 0]);
    }

    #[test]
    fn all_unhealthy_are_still_all_tried() {
        let cands = [c(2, Some(false)), c(1, Some(false))];
        assert_eq!(order(Balance::LeastConnections, &cands, 0), [1, 0]);
    }

    #[test]
    fn zero_and_one_candidate() {
        assert!(order(Balance::RoundRobin, &[], 5).is_empty());
        assert_eq!(order(Balance::RoundRobin, &[c(9, Some(false))], 5), [0]);
    }

    #[test]
    fn every_index_appears_once() {
        for n in 0..6 {
            for cursor in 0..8 {
                for balance in [Balance::RoundRobin, Balance::LeastConnections] {
                    let cands: Vec<Candidate> = (0..n)
                        .map(|i| {
                            c(
                                (i * 7) % 3,
                                [None, Some(true), Some(false)]
                                    .get(i % 3)
                                    .copied()
                                    .flatten(),
                            )
                        })
                        .collect();
                    let mut got = order(balance, &cands, cursor);
                    got.sort_unstable();
                    assert_eq!(got, (0..n).collect::<Vec<_>>());
                }
            }
        }
    }
}
