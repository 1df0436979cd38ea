//! The liveness timers of a connection (the book's runtime chapter, "Connections over TCP"), sans-io.
//!
//! The partner must be heard from (any frame, a heartbeat at least) within the partner
//! timeout; this side sends a heartbeat in every heartbeat period in which it sent nothing
//! else. Like the [`Engine`](crate::Engine), this part of a connection reads no clock
//! and sets no timer itself: the driver asks it when its timer must fire next
//! ([`Liveness::next_timer`]), and when the timer fires it passes the time and the
//! connection's traffic counters in ([`Liveness::timer`]), and carries out what it is told
//! ([`Beat`]): nothing, send a heartbeat, or give the partner up.

use std::time::Duration;

use std::time::Instant;

/// What the driver does when the liveness timer fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Beat {
    /// Nothing: traffic went both ways.
    Quiet,
    /// Send a heartbeat (this side sent nothing for a period), then report the new count of
    /// writes with [`Liveness::sent`].
    Heartbeat,
    /// The partner sent nothing for the whole timeout: the connection is lost.
    Lost(Duration),
}

/// The heartbeat and partner-timeout state of one connection.
#[derive(Clone, Debug)]
pub struct Liveness {
    period: Duration,
    timeout: Duration,
    /// The connection's count of writes at the last timer (or heartbeat).
    sent: u64,
    /// The connection's count of reads at the last timer.
    received: u64,
    /// When something last arrived (as far as the timers saw).
    heard: Instant,
    next: Instant,
}

impl Liveness {
    /// Timers for a connection that opened at `now`, with heartbeats every `period` and the
    /// partner given up after `timeout` of silence.
    pub fn new(now: Instant, period: Duration, timeout: Duration) -> Liveness {
        Liveness { period, timeout, sent: 0, received: 0, heard: now, next: now + period }
    }

    /// When the driver's timer must fire next.
    pub fn next_timer(&self) -> Instant {
        self.next
    }

    /// The timer fired at `now`; `sent` and `received` count the connection's writes and
    /// reads so far; `reading_paused` says that this side is not reading at the moment (its
    /// reader is busy with what it read), so the partner's silence cannot be told and
    /// counts as heard.
    pub fn timer(&mut self, now: Instant, sent: u64, received: u64, reading_paused: bool) -> Beat {
        if received != self.received || reading_paused {
            self.received = received;
            self.heard = now;
        } else if now.saturating_duration_since(self.heard) >= self.timeout {
            return Beat::Lost(self.timeout);
        }
        self.next = now + self.period;
        if sent == self.sent {
            Beat::Heartbeat
        } else {
            self.sent = sent;
            Beat::Quiet
        }
    }

    /// After a heartbeat: the connection's count of writes, heartbeat included.
    pub fn sent(&mut self, sent: u64) {
        self.sent = sent;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: Duration = Duration::from_secs(1);
    const TIMEOUT: Duration = Duration::from_secs(5);

    #[test]
    fn an_idle_side_sends_one_heartbeat_per_period() {
        let start = Instant::now();
        let mut live = Liveness::new(start, PERIOD, TIMEOUT);
        assert_eq!(live.next_timer(), start + PERIOD);
        let (mut sent, mut received) = (0, 0);
        for i in 1..=10u32 {
            let now = live.next_timer();
            assert_eq!(now, start + PERIOD * i, "one timer per period");
            received += 1; // the partner's heartbeat
            assert_eq!(live.timer(now, sent, received, false), Beat::Heartbeat);
            sent += 1;
            live.sent(sent);
        }
    }

    #[test]
    fn a_side_that_sends_anyway_needs_no_heartbeat() {
        let start = Instant::now();
        let mut live = Liveness::new(start, PERIOD, TIMEOUT);
        assert_eq!(live.timer(start + PERIOD, 3, 1, false), Beat::Quiet);
        assert_eq!(live.timer(start + PERIOD * 2, 7, 2, false), Beat::Quiet);
        // A period without writes: a heartbeat.
        assert_eq!(live.timer(start + PERIOD * 3, 7, 3, false), Beat::Heartbeat);
    }

    #[test]
    fn a_silent_partner_is_lost_after_the_timeout_and_not_before() {
        let start = Instant::now();
        let mut live = Liveness::new(start, PERIOD, TIMEOUT);
        // Heard at 2 s; then silence.
        assert_eq!(live.timer(start + PERIOD * 2, 0, 1, false), Beat::Heartbeat);
        live.sent(1);
        for i in 3..7u32 {
            let beat = live.timer(start + PERIOD * i, i.into(), 1, false);
            assert_ne!(beat, Beat::Lost(TIMEOUT), "only {} s of silence", i - 2);
        }
        assert_eq!(live.timer(start + PERIOD * 7, 7, 1, false), Beat::Lost(TIMEOUT), "5 s of silence");
    }

    #[test]
    fn silence_while_this_side_is_not_reading_does_not_count() {
        let start = Instant::now();
        let mut live = Liveness::new(start, PERIOD, TIMEOUT);
        // Ten seconds in which the reader is busy (a block blocking in a host function).
        for i in 1..=10u32 {
            assert_ne!(live.timer(start + PERIOD * i, i.into(), 0, true), Beat::Lost(TIMEOUT), "at {i} s");
        }
        // Reading again: the timeout counts from the last busy tick.
        for i in 11..15u32 {
            assert_ne!(live.timer(start + PERIOD * i, i.into(), 0, false), Beat::Lost(TIMEOUT), "at {i} s");
        }
        assert_eq!(live.timer(start + PERIOD * 15, 15, 0, false), Beat::Lost(TIMEOUT));
    }

    #[test]
    fn hearing_from_the_partner_restarts_the_timeout() {
        let start = Instant::now();
        let mut live = Liveness::new(start, PERIOD, TIMEOUT);
        let mut received = 0;
        for i in 1..=30u32 {
            if i % 4 == 0 {
                received += 1; // heard every 4 s: under the 5 s timeout
            }
            assert_ne!(
                live.timer(start + PERIOD * i, i.into(), received, false),
                Beat::Lost(TIMEOUT),
                "at {i} s"
            );
        }
    }
}
