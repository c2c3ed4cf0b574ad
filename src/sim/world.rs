//! The simulated market: a pure, seeded model of books, the account's fills and its positions.
//!
//! Architecture Invariant: nothing here reads a clock or does IO; the caller passes `now_ms`, and
//! the random sequence depends only on the seed, so the same seed gives the same trades, positions
//! and books whatever the wall-clock timestamps are.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

/// Levels a book side is kept around (the brief's "~40 levels").
const TARGET_LEVELS: usize = 40;
const MIN_LEVELS: usize = 36;
const MAX_LEVELS: usize = 44;
/// Chance per step that the account gets a fill.
const FILL_PROBABILITY: f64 = 0.45;

/// A scripted inventory excursion, repeated every `period` steps: at the cycle's first step the
/// account's position on `market` jumps to `steps` (signed toward the position it had, long if
/// flat), stays there for `hold` steps with no other fill on that market, is closed to zero by one
/// fill, and sees no fill for `quiet` steps more; then random fills resume until the next cycle.
/// `demo` uses one so its inventory alerts go through their whole life on a known schedule,
/// whatever the random walk does (random positions alone left them pending for minutes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Excursion {
    pub market: String,
    /// Target position in quantity steps (absolute).
    pub steps: i64,
    /// World step (counting warmup from 1) of the first cycle's jump.
    pub first_step: u64,
    pub hold: u64,
    pub quiet: u64,
    /// Steps from one jump to the next; at least `hold + quiet + 1`.
    pub period: u64,
}

/// What an excursion does to one market at one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Script {
    Jump,
    /// No fill on the market (held, or quiet after the close).
    Hold,
    Close,
    Free,
}

impl Excursion {
    fn script(&self, step: u64) -> Script {
        if step < self.first_step {
            return Script::Free;
        }
        let at = (step - self.first_step) % self.period.max(self.hold + self.quiet + 1);
        if at == 0 {
            Script::Jump
        } else if at < self.hold {
            Script::Hold
        } else if at == self.hold {
            Script::Close
        } else if at <= self.hold + self.quiet {
            Script::Hold
        } else {
            Script::Free
        }
    }
}

/// One market's static parameters and live book. Prices are integer ticks and sizes integer steps,
/// so the book never accumulates decimal noise; `Decimal` appears only at the edges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Market {
    pub id: String,
    /// price = ticks × 10^-tick_scale
    pub tick_scale: u32,
    /// quantity = steps × 10^-step_scale
    pub step_scale: u32,
    /// Mid price in ticks; bids stay strictly below it and asks strictly above.
    pub mid: i64,
    /// Book levels sit on multiples of this many ticks.
    pub gap: i64,
    pub bids: BTreeMap<i64, i64>,
    pub asks: BTreeMap<i64, i64>,
}

impl Market {
    pub fn price(&self, ticks: i64) -> Decimal {
        Decimal::new(ticks, self.tick_scale)
    }

    pub fn qty(&self, steps: i64) -> Decimal {
        Decimal::new(steps, self.step_scale)
    }

    /// Best `depth` levels of a side, best first.
    pub fn top(&self, bid: bool, depth: usize) -> Vec<(i64, i64)> {
        if bid {
            self.bids
                .iter()
                .rev()
                .take(depth)
                .map(|(p, s)| (*p, *s))
                .collect()
        } else {
            self.asks
                .iter()
                .take(depth)
                .map(|(p, s)| (*p, *s))
                .collect()
        }
    }

    fn best_bid(&self) -> i64 {
        self.bids
            .keys()
            .next_back()
            .copied()
            .unwrap_or(self.mid - 1)
    }

    fn best_ask(&self) -> i64 {
        self.asks.keys().next().copied().unwrap_or(self.mid + 1)
    }

    /// Nearest grid price strictly below (bid) or above (ask) the mid.
    fn first_grid(&self, bid: bool) -> i64 {
        let below = (self.mid - 1).div_euclid(self.gap) * self.gap;
        if bid {
            below
        } else {
            let above = below + self.gap;
            if above > self.mid {
                above
            } else {
                above + self.gap
            }
        }
    }

    /// Grid price `n` levels away from the touch (n = 0 is the touch).
    fn grid(&self, bid: bool, n: i64) -> i64 {
        let first = self.first_grid(bid);
        if bid {
            first - n * self.gap
        } else {
            first + n * self.gap
        }
    }

    fn side_mut(&mut self, bid: bool) -> &mut BTreeMap<i64, i64> {
        if bid { &mut self.bids } else { &mut self.asks }
    }
}

/// A fill on the account. `n` is the 1-based trade number (id `t-000001`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trade {
    pub n: u64,
    pub market: usize,
    pub buy: bool,
    pub maker: bool,
    pub price: i64,
    pub qty: i64,
    pub created_ms: i64,
    /// Never sent on a stream (the `drop_fill_every` fault), only returned by `GET /perps/trades`.
    /// Decided once, when the trade is created, so changing the fault later does not rewrite history.
    pub stream_hidden: bool,
}

/// An open position. `n` counts positions on its market (1 gives id `p-BTC-PERP`, 2 `p-BTC-PERP-2`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    pub n: u32,
    /// Signed steps, long > 0; never zero while the position exists.
    pub qty: i64,
    pub entry: Decimal,
    pub realized: Decimal,
}

/// What one fill did to its market's position: `state` None means the position was removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PositionChange {
    pub market: usize,
    pub n: u32,
    pub state: Option<Position>,
}

/// The outcome of a step that produced a fill.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fill {
    /// Index into `World::trades`.
    pub trade: usize,
    pub position: PositionChange,
}

pub fn position_id(market: &str, n: u32) -> String {
    if n <= 1 {
        format!("p-{market}")
    } else {
        format!("p-{market}-{n}")
    }
}

pub fn trade_id(n: u64) -> String {
    format!("t-{n:06}")
}

#[derive(Clone, Debug)]
pub struct World {
    rng: fastrand::Rng,
    pub markets: Vec<Market>,
    /// Every trade ever generated, in order.
    pub trades: Vec<Trade>,
    /// Per market, the open position if any.
    pub positions: Vec<Option<Position>>,
    opened: Vec<u32>,
    pub steps: u64,
    /// Realized pnl of every position ever, closed ones included (balances need it).
    pub realized_total: Decimal,
    /// Time of the latest step, for `sourceTs`.
    pub last_step_ms: i64,
    /// The scripted excursion and the index of its market, if any.
    excursion: Option<(Excursion, usize)>,
}

/// (mid price, tick scale, step scale) by market name.
fn params(id: &str) -> (i64, u32, u32) {
    if id.starts_with("BTC") {
        (68_000, 1, 3)
    } else if id.starts_with("ETH") {
        (3_500, 2, 2)
    } else if id.starts_with("SOL") {
        (150, 2, 1)
    } else {
        (100, 2, 0)
    }
}

impl World {
    pub fn new(seed: u64, market_ids: &[String]) -> World {
        let mut rng = fastrand::Rng::with_seed(seed);
        let markets = market_ids
            .iter()
            .map(|id| {
                let (price, tick_scale, step_scale) = params(id);
                let ticks_per_unit = 10_i64.pow(tick_scale);
                // Start within ±2% of the nominal price so seeds differ visibly.
                let jitter = rng.i64(-200..=200);
                let mid = price * ticks_per_unit * (10_000 + jitter) / 10_000;
                // About one basis point between levels, at least one tick.
                let gap = (mid / 10_000).max(1);
                let mut market = Market {
                    id: id.clone(),
                    tick_scale,
                    step_scale,
                    mid,
                    gap,
                    bids: BTreeMap::new(),
                    asks: BTreeMap::new(),
                };
                for bid in [true, false] {
                    for n in 0..TARGET_LEVELS as i64 {
                        let price = market.grid(bid, n);
                        let size = level_size(&mut rng);
                        market.side_mut(bid).insert(price, size);
                    }
                }
                market
            })
            .collect::<Vec<_>>();
        let count = markets.len();
        World {
            rng,
            markets,
            trades: Vec::new(),
            positions: vec![None; count],
            opened: vec![0; count],
            steps: 0,
            realized_total: Decimal::ZERO,
            last_step_ms: 0,
            excursion: None,
        }
    }

    /// Script an excursion (see [`Excursion`]); one on a market the world does not have is
    /// ignored.
    pub fn with_excursion(mut self, excursion: Option<Excursion>) -> World {
        self.excursion = excursion.and_then(|e| {
            let m = self.markets.iter().position(|m| m.id == e.market)?;
            Some((e, m))
        });
        self
    }

    /// Advance the world by one step: move every book, maybe fill the account.
    pub fn step(&mut self, now_ms: i64) -> Option<Fill> {
        self.steps += 1;
        self.last_step_ms = now_ms;
        for m in 0..self.markets.len() {
            self.move_book(m);
        }
        let scripted = self
            .excursion
            .as_ref()
            .map(|(e, m)| (e.script(self.steps), e.steps, *m));
        match scripted {
            Some((Script::Jump, target, m)) => {
                let current = self.positions[m].as_ref().map_or(0, |p| p.qty);
                let target = if current < 0 { -target } else { target };
                if current != target {
                    return Some(self.fill_signed(m, target - current, now_ms));
                }
                return None;
            }
            Some((Script::Close, _, m)) => {
                let current = self.positions[m].as_ref().map_or(0, |p| p.qty);
                if current != 0 {
                    return Some(self.fill_signed(m, -current, now_ms));
                }
                return None;
            }
            _ => {}
        }
        if self.markets.is_empty() || self.rng.f64() >= FILL_PROBABILITY {
            return None;
        }
        let m = self.rng.usize(..self.markets.len());
        if matches!(scripted, Some((Script::Hold, _, held)) if held == m) {
            return None;
        }
        Some(self.fill(m, now_ms))
    }

    fn move_book(&mut self, m: usize) {
        let rng = &mut self.rng;
        let market = &mut self.markets[m];
        if rng.bool() {
            let gap = market.gap;
            market.mid += rng.i64(-2 * gap..=2 * gap);
        }
        let mid = market.mid;
        market.bids.retain(|p, _| *p < mid);
        market.asks.retain(|p, _| *p > mid);
        for bid in [true, false] {
            // Keep the touch mostly populated so the spread stays tight.
            let touch = market.grid(bid, 0);
            if !market.side_mut(bid).contains_key(&touch) && rng.f64() < 0.7 {
                let size = level_size(rng);
                market.side_mut(bid).insert(touch, size);
            }
            for _ in 0..rng.usize(1..=3) {
                let len = market.side_mut(bid).len();
                let roll = rng.f64();
                if roll < 0.65 && len > 0 {
                    let i = rng.usize(..len);
                    let size = level_size(rng);
                    if let Some(level) = market.side_mut(bid).values_mut().nth(i) {
                        *level = size;
                    }
                } else if roll < 0.82 && len > 0 {
                    let i = rng.usize(..len);
                    let price = market.side_mut(bid).keys().nth(i).copied();
                    if let Some(price) = price {
                        market.side_mut(bid).remove(&price);
                    }
                } else {
                    let price = market.grid(bid, rng.i64(0..TARGET_LEVELS as i64 + 4));
                    let size = level_size(rng);
                    market.side_mut(bid).insert(price, size);
                }
            }
            let side = market.side_mut(bid);
            while side.len() > MAX_LEVELS {
                // Farthest from the touch goes first.
                if bid {
                    side.pop_first();
                } else {
                    side.pop_last();
                }
            }
            while market.side_mut(bid).len() < MIN_LEVELS {
                let side = market.side_mut(bid);
                let far = if bid {
                    side.keys().next().copied()
                } else {
                    side.keys().next_back().copied()
                };
                let price = match far {
                    Some(p) if bid => p - market.gap,
                    Some(p) => p + market.gap,
                    None => market.grid(bid, 0),
                };
                let size = level_size(rng);
                market.side_mut(bid).insert(price, size);
            }
        }
    }

    fn fill(&mut self, m: usize, now_ms: i64) -> Fill {
        let rng = &mut self.rng;
        let current = self.positions[m].as_ref().map(|p| p.qty);
        // Signed steps of the fill. The mix makes positions regularly close to exactly zero.
        let signed = match current {
            None => {
                let q = rng.i64(1..=10);
                if rng.bool() { q } else { -q }
            }
            Some(q) => {
                let dir = q.signum();
                let size = q.abs();
                let roll = rng.f64();
                if roll < 0.25 {
                    -q
                } else if roll < 0.5 {
                    if size > 1 {
                        -dir * rng.i64(1..size)
                    } else {
                        -q
                    }
                } else if roll < 0.58 {
                    -dir * (size + rng.i64(1..=10))
                } else {
                    dir * rng.i64(1..=10)
                }
            }
        };
        self.fill_signed(m, signed, now_ms)
    }

    /// A fill of `signed` steps (buy > 0) on market `m`, never 0.
    fn fill_signed(&mut self, m: usize, signed: i64, now_ms: i64) -> Fill {
        let rng = &mut self.rng;
        let buy = signed > 0;
        let maker = rng.bool();
        let market = &self.markets[m];
        let (bid, ask, gap) = (market.best_bid(), market.best_ask(), market.gap);
        // Taker fills cross to the far touch; maker fills rest at our own touch, sometimes one level back.
        let back = if rng.f64() < 0.3 { gap } else { 0 };
        let price = match (buy, maker) {
            (true, false) => ask,
            (true, true) => bid - back,
            (false, false) => bid,
            (false, true) => ask + back,
        };
        let n = self.trades.len() as u64 + 1;
        self.trades.push(Trade {
            n,
            market: m,
            buy,
            maker,
            price,
            qty: signed.abs(),
            created_ms: now_ms,
            stream_hidden: false,
        });
        let price = market.price(price);
        let one_step = market.qty(1);
        let position = match self.positions[m].take() {
            None => {
                self.opened[m] += 1;
                Position {
                    n: self.opened[m],
                    qty: signed,
                    entry: price,
                    realized: Decimal::ZERO,
                }
            }
            Some(mut p) if p.qty.signum() == signed.signum() => {
                let (old, add) = (Decimal::from(p.qty.abs()), Decimal::from(signed.abs()));
                p.entry = ((old * p.entry + add * price) / (old + add))
                    .round_dp(8)
                    .normalize();
                p.qty += signed;
                p
            }
            Some(mut p) => {
                let closed = p.qty.abs().min(signed.abs());
                let dir = Decimal::from(p.qty.signum());
                let pnl = Decimal::from(closed) * one_step * (price - p.entry) * dir;
                p.realized = (p.realized + pnl).normalize();
                self.realized_total += pnl;
                let flipped = signed.abs() > p.qty.abs();
                p.qty += signed;
                if flipped {
                    p.entry = price;
                }
                p
            }
        };
        let n = position.n;
        let state = if position.qty == 0 {
            None
        } else {
            self.positions[m] = Some(position.clone());
            Some(position)
        };
        Fill {
            trade: self.trades.len() - 1,
            position: PositionChange {
                market: m,
                n,
                state,
            },
        }
    }
}

fn level_size(rng: &mut fastrand::Rng) -> i64 {
    rng.i64(1..=500)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn markets() -> Vec<String> {
        ["BTC-PERP", "ETH-PERP", "SOL-PERP"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn same_seed_same_world_and_different_seed_differs() {
        let (mut a, mut b, mut c) = (
            World::new(7, &markets()),
            World::new(7, &markets()),
            World::new(8, &markets()),
        );
        for i in 0..300 {
            // Different timestamps must not change anything but the timestamps.
            let fa = a.step(i);
            let fb = b.step(i * 1000 + 5);
            assert_eq!(fa, fb);
            c.step(i);
        }
        let strip = |w: &World| {
            w.trades
                .iter()
                .map(|t| Trade {
                    created_ms: 0,
                    ..*t
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(&a), strip(&b));
        assert_eq!(a.positions, b.positions);
        assert_eq!(a.markets, b.markets);
        assert_ne!(strip(&a), strip(&c));
        assert_ne!(a.markets, c.markets);
    }

    #[test]
    fn books_stay_uncrossed_with_about_forty_levels() {
        let mut w = World::new(1, &markets());
        for i in 0..500 {
            w.step(i);
            for m in &w.markets {
                let (bid, ask) = (m.best_bid(), m.best_ask());
                assert!(
                    bid < m.mid && m.mid < ask,
                    "{} crossed: {bid} {} {ask}",
                    m.id,
                    m.mid
                );
                assert!((MIN_LEVELS..=MAX_LEVELS).contains(&m.bids.len()));
                assert!((MIN_LEVELS..=MAX_LEVELS).contains(&m.asks.len()));
                assert!(m.bids.values().chain(m.asks.values()).all(|s| *s > 0));
            }
        }
    }

    // The demo relies on this schedule for its alerts to go through their whole life.
    #[test]
    fn an_excursion_jumps_holds_closes_and_stays_quiet_every_period() {
        let markets = ["BTC-PERP", "SOL-PERP"].map(String::from);
        let e = Excursion {
            market: "SOL-PERP".into(),
            steps: 8,
            first_step: 50,
            hold: 20,
            quiet: 10,
            period: 60,
        };
        let mut w = World::new(3, &markets).with_excursion(Some(e));
        let (mut jumps, mut closes, mut free_sol_fills) = (0, 0, 0);
        for i in 1..=400_i64 {
            let fill = w.step(i);
            let at = (w.steps >= 50).then(|| (w.steps - 50) % 60);
            let sol = fill.as_ref().filter(|f| f.position.market == 1);
            let qty = w.positions[1].as_ref().map_or(0, |p| p.qty);
            match at {
                Some(0) => {
                    assert_eq!(qty.abs(), 8, "step {}", w.steps);
                    jumps += 1;
                }
                Some(1..=19) => {
                    assert!(sol.is_none(), "a fill on the held market at {}", w.steps);
                    assert_eq!(qty.abs(), 8);
                }
                Some(20) => {
                    assert_eq!(qty, 0, "closed at {}", w.steps);
                    closes += 1;
                }
                Some(21..=30) => assert!(sol.is_none(), "a fill while quiet at {}", w.steps),
                _ => free_sol_fills += usize::from(sol.is_some()),
            }
        }
        assert_eq!((jumps, closes), (6, 6));
        assert!(
            free_sol_fills > 10,
            "random fills resume between excursions"
        );
    }

    #[test]
    fn positions_open_grow_shrink_flip_close_and_equal_their_fills() {
        let mut w = World::new(42, &markets());
        // Per market: signed fills since the current position opened, and its id number.
        let mut since_open: Vec<(u32, i64)> = vec![(0, 0); 3];
        let (mut opens, mut grows, mut shrinks, mut flips, mut closes) = (0, 0, 0, 0, 0);
        let mut ids = std::collections::HashSet::new();
        for i in 0..600 {
            let before = w.positions.clone();
            let Some(fill) = w.step(i) else { continue };
            let t = w.trades[fill.trade];
            let m = t.market;
            let signed = if t.buy { t.qty } else { -t.qty };
            let pc = &fill.position;
            match (&before[m], &pc.state) {
                (None, Some(p)) => {
                    opens += 1;
                    assert!(ids.insert((m, p.n)), "position ids are never reused");
                    since_open[m] = (p.n, 0);
                }
                (Some(old), Some(new)) if old.qty.signum() != new.qty.signum() => flips += 1,
                (Some(old), Some(new)) if new.qty.abs() > old.qty.abs() => grows += 1,
                (Some(_), Some(_)) => shrinks += 1,
                (Some(old), None) => {
                    closes += 1;
                    assert_eq!(old.qty + signed, 0);
                }
                (None, None) => panic!("a fill without a position"),
            }
            since_open[m].1 += signed;
            assert_eq!(since_open[m].0, pc.n);
            assert_eq!(
                w.positions[m].as_ref().map_or(0, |p| p.qty),
                since_open[m].1
            );
            assert_eq!(pc.state, w.positions[m]);
        }
        assert!(
            opens > 10 && grows > 10 && shrinks > 10 && flips > 2 && closes > 10,
            "opens {opens} grows {grows} shrinks {shrinks} flips {flips} closes {closes}"
        );
        assert_eq!(
            w.trades.iter().map(|t| t.n).collect::<Vec<_>>(),
            (1..=w.trades.len() as u64).collect::<Vec<_>>()
        );
    }

    #[test]
    fn realized_pnl_is_closed_quantity_times_price_move() {
        let mut w = World::new(3, &markets());
        for i in 0..400 {
            let before = w.positions.clone();
            let Some(fill) = w.step(i) else { continue };
            let t = w.trades[fill.trade];
            let Some(old) = &before[t.market] else {
                continue;
            };
            let signed = if t.buy { t.qty } else { -t.qty };
            if old.qty.signum() == signed.signum() {
                continue;
            }
            let market = &w.markets[t.market];
            let closed = old.qty.abs().min(t.qty);
            let expected = old.realized
                + market.qty(closed)
                    * (market.price(t.price) - old.entry)
                    * Decimal::from(old.qty.signum());
            if let Some(new) = &fill.position.state {
                assert_eq!(new.realized, expected);
                let entry = if closed < t.qty {
                    market.price(t.price)
                } else {
                    old.entry
                };
                assert_eq!(new.entry, entry);
            }
        }
    }

    #[test]
    fn ids_format() {
        assert_eq!(trade_id(1), "t-000001");
        assert_eq!(trade_id(1_234_567), "t-1234567");
        assert_eq!(position_id("BTC-PERP", 1), "p-BTC-PERP");
        assert_eq!(position_id("BTC-PERP", 2), "p-BTC-PERP-2");
    }
}
