//! The samplers behind the page: each reads one part of the saga on its own clock and hands
//! what it saw to the [`Hub`](crate::hub::Hub), as the [`page`](crate::page) payload of its topic.
//!
//! | topic | what | every |
//! |---|---|---|
//! | `queue-sample` | depth and consumers of every saga queue (a passive declare: exact) | 1 s |
//! | `queues` | the same with publish/deliver rates and unacked counts (management API) | 1 s (rates: 2 s) |
//! | `orders` | counts per status and the newest orders of each status | 1 s |
//! | `stock` | per item: available, initial, reserved, released, and whether they balance | 1 s |
//! | `catalog` | every product: price, stock, low/out (inventory-svc), the replica's age (order-svc) | 2 s |
//! | `alerts` | alerts.yml's queue rules judged on the `queues` table ([`crate::alerts`]) | 1 s |
//! | `dlq` | the DLQ's depth; its first messages, peeked without losing any, once it is quiet | 1 s |
//! | `invariants` | the rules of `sagactl check`, as lights, and deliveries held unacked | `--check-every` |
//! | `services` | the demo's service processes, and whether fault actions are allowed | 1 s |
//! | `status` | which dependencies answer | 1 s |
//!
//! A sampler that cannot reach what it reads says so in `status` and tries again on its next
//! tick; nothing here ever gives up.
//!
//! Looking at the DLQ's messages means holding them for a moment (taken unacked, given back),
//! and while they are held nobody else can see them: a lab drill or `sagactl dlq list` in a
//! terminal would count too few. So the board looks only once the DLQ's depth has stopped
//! changing for [`DLQ_QUIET`] (a drill's DLQ steps come in bursts well under that), never while
//! a drill it started runs, and at once only when someone asks (a replay, a purge, "look now").

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use saga_domain::events::unix_now_millis;
use saga_domain::order::OrderStatus;
use tokio::task::JoinSet;

use crate::lab::processes;
use crate::page::{
    Catalog, Dlq, Invariants, Light, LightState, OrderRow, Orders, ProductRow, QueueHistory,
    QueueRow, QueueTable, Sample, Services, Status, Stock, StockRow,
};
use crate::{Board, Shutdown, lock};
use sagactl::check::{self, RuleResult, StockBooks};
use sagactl::dlq;
use sagactl::management::Rates;

/// How much history the queue chart keeps: ten minutes of one sample a second.
const SERIES_POINTS: usize = 600;
/// How many of the newest orders of each status the page gets.
const ORDERS_SHOWN: isize = 30;
/// How many DLQ messages the page shows (the depth is always exact).
const DLQ_SHOWN: usize = 100;
/// How long the DLQ's depth must stay the same before the board looks at its messages.
pub const DLQ_QUIET: Duration = Duration::from_secs(3);
/// A delivery unacked this long is held, not in progress: every delivery must be settled
/// (acked, parked for a retry or dead-lettered) within moments. The management API's counts lag
/// by up to its statistics interval (5 s by default), hence the margin.
pub const HELD_AFTER: Duration = Duration::from_secs(10);
/// The name of the orders list that holds every status (beside one list per status).
pub const ALL_ORDERS: &str = "ALL";

/// Start every sampler; they stop when `shutdown` is cancelled.
pub fn spawn(board: Arc<Board>, shutdown: Shutdown) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    let every = |secs: u64| Duration::from_secs(secs);
    type Sampler = fn(Arc<Board>) -> futures_util::future::BoxFuture<'static, ()>;
    let samplers: [(Duration, Sampler); 7] = [
        (every(1), |b| {
            Box::pin(async move { sample_queues(&b).await })
        }),
        (every(2), |b| {
            Box::pin(async move { sample_rates(&b).await })
        }),
        (every(1), |b| {
            Box::pin(async move { sample_orders_and_stock(&b).await })
        }),
        (every(board.args.check_every), |b| {
            Box::pin(async move { sample_invariants(&b).await })
        }),
        (every(1), |b| Box::pin(async move { sample_services(&b) })),
        (every(2), |b| {
            Box::pin(async move { sample_catalog(&b).await })
        }),
        (every(2), |b| {
            Box::pin(async move { sample_prometheus(&b).await })
        }),
    ];
    for (period, sampler) in samplers {
        let board = board.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(period);
            // A slow round (a broker timing out) is not followed by a burst of catch-up rounds.
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => sampler(board.clone()).await,
                }
            }
        });
    }
    let dlq_board = board.clone();
    tasks.spawn(async move {
        // A replay or a purge asks for a fresh look at once rather than at the next change.
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = dlq_board.dlq_dirty.notified() => refresh_dlq(&dlq_board).await,
            }
        }
    });
    tasks
}

// --- what the samplers keep between rounds ---------------------------------------------------

/// The live state the samplers share, held by the board.
#[derive(Default)]
pub struct LiveState {
    pub series: std::sync::Mutex<Series>,
    rates: std::sync::Mutex<Vec<Option<Rates>>>,
    dlq: std::sync::Mutex<DlqView>,
    /// Per consumed queue: since when it has had unacked deliveries without a break.
    held: std::sync::Mutex<BTreeMap<String, Held>>,
    /// The lights of the rules only Prometheus judges, from its last answer.
    prometheus: std::sync::Mutex<Vec<crate::alerts::AlertLight>>,
    broker_up: AtomicBool,
    redis_up: AtomicBool,
    management_up: AtomicBool,
}

/// The queue chart's data: one point a second for the last minutes.
#[derive(Debug, Default)]
pub struct Series {
    points: VecDeque<Sample>,
}

impl Series {
    fn push(&mut self, sample: Sample) {
        if self.points.len() == SERIES_POINTS {
            self.points.pop_front();
        }
        self.points.push_back(sample);
    }

    /// The whole chart, for a page that opens now.
    pub fn history<'a>(&'a self, queues: &'a [String]) -> QueueHistory<'a> {
        QueueHistory {
            queues,
            points: self.points.iter().collect(),
        }
    }
}

/// A queue whose unacked count has stayed above zero at every sample since `since`.
#[derive(Debug, Clone, Copy)]
struct Held {
    since: Instant,
    unacked: u64,
    /// The last sample at which messages were being delivered or waiting: a backlog being
    /// worked keeps unacked above zero without anything being stuck.
    busy_at: Option<Instant>,
}

/// What the samplers know of the DLQ: what the page shows, and what the checks need.
#[derive(Debug, Clone, Default)]
struct DlqView {
    shown: Dlq,
    dead_letters: Vec<check::DeadLetter>,
    /// When the depth last changed.
    changed_at: Option<Instant>,
}

// --- queues ----------------------------------------------------------------------------------

async fn sample_queues(board: &Board) {
    let (depth, consumers) = match read_depths(board).await {
        Ok(read) => {
            board.live.broker_up.store(true, Ordering::Relaxed);
            read
        }
        Err(_) => {
            board.live.broker_up.store(false, Ordering::Relaxed);
            (
                vec![None; board.queues.len()],
                vec![None; board.queues.len()],
            )
        }
    };
    let sample = Sample {
        t: unix_now_millis(),
        depth,
        consumers,
    };
    board.hub.send(&sample);
    lock(&board.live.series).push(sample.clone());
    publish_queue_table(board, &sample);

    let dlq_index = board.queues.len() - 1;
    let dlq_depth = sample.depth[dlq_index];
    let stale = {
        let mut view = lock(&board.live.dlq);
        if view.shown.depth != dlq_depth {
            view.shown.depth = dlq_depth;
            view.changed_at = Some(Instant::now());
        }
        let quiet = view.changed_at.is_none_or(|at| at.elapsed() >= DLQ_QUIET);
        dlq_depth.is_some() && dlq_depth != view.shown.peeked_depth && quiet
    };
    if stale {
        refresh_dlq(board).await;
    } else {
        publish_dlq(board);
    }
}

/// One passive declare per queue, on one channel (a fresh one after a missing queue closed it).
async fn read_depths(board: &Board) -> anyhow::Result<(Vec<Option<u32>>, Vec<Option<u32>>)> {
    let conn = board.broker.get().await?;
    let mut channel = conn.create_channel().await?;
    let (mut depth, mut consumers) = (Vec::new(), Vec::new());
    for queue in &board.queues {
        match sagactl::broker::depth(&channel, queue).await {
            Ok(d) => {
                depth.push(Some(d.messages));
                consumers.push(Some(d.consumers));
            }
            Err(_) => {
                depth.push(None);
                consumers.push(None);
                channel = conn.create_channel().await?;
            }
        }
    }
    let _ = channel.close(200, "sampled".into()).await;
    Ok((depth, consumers))
}

async fn sample_rates(board: &Board) {
    let mut rates = Vec::new();
    let mut any = false;
    for queue in &board.queues {
        let r = board.management.rates(&board.vhost, queue).await.ok();
        any |= r.is_some();
        rates.push(r);
    }
    board.live.management_up.store(any, Ordering::Relaxed);
    let waiting: Vec<bool> = lock(&board.live.series)
        .points
        .back()
        .map(|sample| sample.depth.iter().map(|d| d.unwrap_or(0) > 0).collect())
        .unwrap_or_default();
    note_held(board, &rates, &waiting);
    *lock(&board.live.rates) = rates;
}

/// Keep, per consumed queue, since when its unacked count has stayed above zero.
fn note_held(board: &Board, rates: &[Option<Rates>], waiting: &[bool]) {
    let now = Instant::now();
    let mut held = lock(&board.live.held);
    for (i, queue) in board.queues.iter().enumerate() {
        let consumed = *queue != board.common.topology.dlq_queue && !queue.ends_with(".retry");
        match rates.get(i).copied().flatten() {
            Some(r) if consumed && r.unacked > 0 => {
                let busy = r.deliver > 0.0 || waiting.get(i).copied().unwrap_or(false);
                let entry = held.entry(queue.clone()).or_insert(Held {
                    since: now,
                    unacked: r.unacked,
                    busy_at: None,
                });
                entry.unacked = r.unacked;
                if busy {
                    entry.busy_at = Some(now);
                }
            }
            _ => {
                held.remove(queue);
            }
        }
    }
}

fn publish_queue_table(board: &Board, sample: &Sample) {
    let rates = lock(&board.live.rates).clone();
    let rows = board
        .queues
        .iter()
        .enumerate()
        .map(|(i, queue)| {
            let r = rates.get(i).copied().flatten();
            QueueRow {
                name: queue.clone(),
                retry: queue.ends_with(".retry"),
                messages: sample.depth[i],
                consumers: sample.consumers[i],
                unacked: r.map(|r| r.unacked),
                publish: r.map(|r| round1(r.publish)),
                deliver: r.map(|r| round1(r.deliver)),
            }
        })
        .collect::<Vec<_>>();
    let mut alerts = crate::alerts::judge(
        &rows,
        &board.common.topology.dlq_queue,
        &board.alerts,
        Instant::now(),
    );
    if let Some(prometheus) = &board.prometheus {
        alerts
            .lights
            .extend(lock(&board.live.prometheus).iter().cloned());
        alerts.needs_prometheus.clear();
        alerts.prometheus = Some(prometheus.url(""));
    }
    board.hub.set(&alerts);
    board.hub.set(&QueueTable(rows));
}

/// Ask Prometheus (if the board has one) how the rules only it judges stand.
async fn sample_prometheus(board: &Board) {
    let Some(prometheus) = &board.prometheus else {
        return;
    };
    let lights = match prometheus.get("/api/v1/rules?type=alert").await {
        Ok(answer) => crate::alerts::from_prometheus(Ok(&answer)),
        Err(e) => crate::alerts::from_prometheus(Err(&format!("{e:#}"))),
    };
    *lock(&board.live.prometheus) = lights;
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

// --- the DLQ ---------------------------------------------------------------------------------

/// Peek at the DLQ again, unless a drill runs: peeking holds the messages for a moment, and a
/// drill counting the DLQ meanwhile would count wrong.
async fn refresh_dlq(board: &Board) {
    if let Some(drill) = board.drills.running() {
        lock(&board.live.dlq).shown.note = Some(format!(
            "not looked at while the {drill} drill runs (looking holds the messages for a moment)"
        ));
        publish_dlq(board);
        return;
    }
    let peeked = match board.broker.get().await {
        Ok(conn) => dlq::peek(&conn, &board.common.topology.dlq_queue, DLQ_SHOWN).await,
        Err(e) => Err(e),
    };
    {
        let mut view = lock(&board.live.dlq);
        match peeked {
            Ok(peek) => {
                let total = u32::try_from(peek.total).ok();
                view.shown = Dlq {
                    depth: total,
                    entries: peek.entries,
                    peeked_depth: total,
                    peeked_at: Some(unix_now_millis()),
                    note: None,
                };
                view.dead_letters = peek.dead_letters;
            }
            Err(e) => view.shown.note = Some(format!("cannot look at the DLQ: {e:#}")),
        }
    }
    publish_dlq(board);
}

fn publish_dlq(board: &Board) {
    let shown = lock(&board.live.dlq).shown.clone();
    board.hub.set(&shown);
}

// --- orders and stock ------------------------------------------------------------------------

async fn sample_orders_and_stock(board: &Board) {
    let orders = read_orders(board).await;
    let stock = read_stock(board).await;
    let up = orders.is_ok() && stock.is_ok();
    board.live.redis_up.store(up, Ordering::Relaxed);
    if let Ok(orders) = orders {
        board.hub.set(&orders);
    }
    if let Ok(stock) = stock {
        board.hub.set(&stock);
    }
}

/// Counts per status, and the newest orders overall and of each status: the page filters by
/// status without asking again, and a rare status (FAILED) is not crowded out by the rest.
async fn read_orders(board: &Board) -> anyhow::Result<Orders> {
    let keys = &board.keys;
    let mut conn = board.redis.clone();
    let status_key = |s: OrderStatus| format!("{}{s}", keys.orders_by_status_prefix());
    let mut pipe = redis::pipe();
    pipe.zcard(keys.orders())
        .zrevrange(keys.orders(), 0, ORDERS_SHOWN - 1);
    for status in OrderStatus::ALL {
        pipe.zcard(status_key(status))
            .zrevrange(status_key(status), 0, ORDERS_SHOWN - 1);
    }
    let replies: Vec<redis::Value> = pipe.query_async(&mut conn).await?;
    let mut counts = BTreeMap::new();
    let mut lists = BTreeMap::new();
    let names = std::iter::once(ALL_ORDERS).chain(OrderStatus::ALL.map(OrderStatus::as_str));
    for (name, pair) in names.zip(replies.chunks(2)) {
        let count: u64 = redis::from_redis_value(pair[0].clone())?;
        let ids: Vec<String> = redis::from_redis_value(pair[1].clone())?;
        counts.insert(name.to_owned(), count);
        lists.insert(name.to_owned(), ids);
    }
    let ids: Vec<&String> = lists
        .values()
        .flatten()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // An empty pipeline answers nothing at all, not an empty list: no orders, no second trip
    // (it read as "Redis down" on a fresh saga).
    let hashes: Vec<HashMap<String, String>> = if ids.is_empty() {
        Vec::new()
    } else {
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hgetall(keys.order(id));
        }
        pipe.query_async(&mut conn).await?
    };
    let rows: BTreeMap<String, OrderRow> = ids
        .into_iter()
        .zip(hashes)
        .filter_map(|(id, hash)| {
            let order = sagactl::timeline::OrderRecord::from_hash(&hash)?;
            // The total order-svc wrote with a priced order, when it did.
            let stored_total = hash
                .get("total")
                .and_then(|t| t.parse::<i64>().ok())
                .zip(hash.get("currency").filter(|c| !c.is_empty()).cloned());
            Some((id.clone(), OrderRow::of(id, order, stored_total)))
        })
        .collect();
    Ok(Orders {
        counts,
        lists,
        orders: rows,
    })
}

/// The four stock columns, read in one MULTI so that they balance when nothing is wrong.
async fn read_books(board: &Board) -> anyhow::Result<StockBooks> {
    let keys = &board.keys;
    type Column = BTreeMap<String, i64>;
    let (available, initial, reserved, released): (Column, Column, Column, Column) = redis::pipe()
        .atomic()
        .hgetall(keys.stock())
        .hgetall(keys.stock_initial())
        .hgetall(keys.stock_reserved())
        .hgetall(keys.stock_released())
        .query_async(&mut board.redis.clone())
        .await?;
    Ok(StockBooks {
        available,
        initial,
        reserved,
        released,
    })
}

async fn read_stock(board: &Board) -> anyhow::Result<Stock> {
    let books = read_books(board).await?;
    let units = |column: &BTreeMap<String, i64>, item: &str| column.get(item).copied().unwrap_or(0);
    let items: BTreeSet<&String> = books
        .available
        .keys()
        .chain(books.initial.keys())
        .chain(books.reserved.keys())
        .chain(books.released.keys())
        .collect();
    let rows = items
        .into_iter()
        .map(|item| {
            let (available, initial, reserved, released) = (
                units(&books.available, item),
                units(&books.initial, item),
                units(&books.reserved, item),
                units(&books.released, item),
            );
            StockRow {
                item: item.clone(),
                available,
                initial,
                reserved,
                released,
                balanced: initial == available + reserved - released,
            }
        })
        .collect();
    // The same rule the invariant light checks, in the same words.
    let violations = check::unbalanced_stock(&books);
    Ok(Stock {
        items: rows,
        violations,
    })
}

// --- invariants ------------------------------------------------------------------------------

async fn sample_invariants(board: &Board) {
    let started = Instant::now();
    let lights = match check_rules(board).await {
        Ok(lights) => lights,
        Err(e) => {
            board.hub.set(&Invariants::Unknown {
                error: format!("cannot check: {e:#}"),
                at: unix_now_millis(),
            });
            return;
        }
    };
    board.hub.set(&Invariants::Checked {
        lights,
        at: unix_now_millis(),
        took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    });
}

async fn check_rules(board: &Board) -> anyhow::Result<Vec<Light>> {
    let (redis, keys) = (&board.redis, &board.keys);
    // Statuses before and after the ledger: an order whose status moved in between (a cancel
    // racing the read) is left out of the comparison with inventory's records this round.
    let before = check::read_statuses(redis, keys).await?;
    let ledger = check::read_ledger(redis, keys).await?;
    let after = check::read_statuses(redis, keys).await?;
    let steady: check::OrderStatuses = before
        .into_iter()
        .filter(|(id, status)| after.get(id) == Some(status))
        .collect();
    let notifications: Vec<String> = redis.clone().lrange(keys.notifications(), 0, -1).await?;
    let dead_letters = lock(&board.live.dlq).dead_letters.clone();
    let lifecycle = check::read_lifecycle(redis, keys, &steady).await?;

    let in_flight = check::in_flight_orders(&after);
    let lost = check::orders_without_record(&after);
    let first = if !lost.is_empty() {
        (LightState::Red, lost)
    } else if !in_flight.is_empty() {
        (
            LightState::Amber,
            vec![format!(
                "{} order(s) in flight, not final yet: {}",
                in_flight.len(),
                in_flight
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )],
        )
    } else {
        (LightState::Green, Vec::new())
    };
    let mut lights = vec![Light {
        id: "nothing-lost",
        title: "nothing accepted is lost: every order reaches a final status",
        state: first.0,
        detail: first.1,
    }];
    lights.extend(
        check::all_rules(&steady, &ledger, &notifications, &dead_letters, &lifecycle)
            .into_iter()
            .map(
                |RuleResult {
                     id,
                     title,
                     violations,
                 }| Light {
                    id,
                    title,
                    state: if violations.is_empty() {
                        LightState::Green
                    } else {
                        LightState::Red
                    },
                    detail: violations,
                },
            ),
    );
    lights.push(held_light(board));
    Ok(lights)
}

/// The light for invariant 3's second half: every delivery is settled, none held for ever.
fn held_light(board: &Board) -> Light {
    let mut light = Light {
        id: "deliveries-settled",
        title: "every delivery is settled: none held unacked for more than 10 s",
        state: LightState::Green,
        detail: Vec::new(),
    };
    if !board.live.management_up.load(Ordering::Relaxed) {
        light.state = LightState::Amber;
        light.detail.push(
            "cannot tell: the management API does not answer (it counts unacked deliveries)".into(),
        );
        return light;
    }
    let outage = !board.live.redis_up.load(Ordering::Relaxed);
    for (queue, held) in lock(&board.live.held).iter() {
        let secs = held.since.elapsed().as_secs();
        if held.since.elapsed() < HELD_AFTER {
            continue;
        }
        let (state, why) = if outage {
            (
                LightState::Amber,
                "while Redis does not answer: waited out, as an outage must be",
            )
        } else if held.busy_at.is_some_and(|at| at.elapsed() < HELD_AFTER) {
            (
                LightState::Amber,
                "while the queue is busy: a backlog being worked, or something stuck",
            )
        } else {
            (
                LightState::Red,
                "with nothing else delivered: held, never settled",
            )
        };
        if state == LightState::Red || light.state == LightState::Green {
            light.state = state;
        }
        light.detail.push(format!(
            "{queue}: {} delivery(ies) unacked for {secs} s {why}",
            held.unacked
        ));
    }
    light
}

// --- processes and status --------------------------------------------------------------------

fn sample_services(board: &Board) {
    let instances = processes::scan(&board.args.run_dir);
    board.hub.set(&Services {
        run_dir: board.args.run_dir.clone(),
        instances,
        faults_refused: board.faults_refused(),
        redis_stop: board.args.allow_redis_stop && board.faults_refused().is_none(),
        redis_outage: board.redis_outage.state(),
        scripts_dir: board.scripts_dir.clone(),
    });
    let up = |flag: &AtomicBool| flag.load(Ordering::Relaxed);
    board.hub.set(&Status {
        broker: up(&board.live.broker_up),
        redis: up(&board.live.redis_up),
        management: up(&board.live.management_up),
        vhost: board.vhost.clone(),
        prefix: board.common.redis_prefix.clone(),
        listen: board.listen.to_string(),
        actions: board.access.policy(),
        drill: board.drills.running(),
        traces: board.traces.counts().0,
        spans: board.traces.counts().1,
    });
}

// --- the catalog -----------------------------------------------------------------------------

/// Both services' `GET /products`: inventory-svc's rows (the owner: price, stock, markers),
/// with the age of order-svc's replica of each, and the replica's own rows for a product
/// inventory-svc did not list (it is away, say).
async fn sample_catalog(board: &Board) {
    let (owned, replica) = tokio::join!(
        board.inventory_svc.get("/products"),
        board.order_svc.get("/products")
    );
    let mut catalog = Catalog::default();
    let rows = |answer: &serde_json::Value| -> Vec<ProductRow> {
        answer
            .get("products")
            .and_then(serde_json::Value::as_array)
            .map(|all| {
                all.iter()
                    .filter_map(|p| serde_json::from_value(p.clone()).ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let replica: BTreeMap<String, ProductRow> = match replica {
        Ok(answer) => {
            catalog.replica = true;
            rows(&answer)
                .into_iter()
                .map(|p| (p.item.clone(), p))
                .collect()
        }
        Err(e) => {
            catalog.notes.push(format!("order-svc's replica: {e:#}"));
            BTreeMap::new()
        }
    };
    let mut products: BTreeMap<String, ProductRow> = match owned {
        Ok(answer) => {
            catalog.inventory = true;
            rows(&answer)
                .into_iter()
                .map(|p| (p.item.clone(), p))
                .collect()
        }
        Err(e) => {
            catalog.notes.push(format!("inventory-svc: {e:#}"));
            BTreeMap::new()
        }
    };
    for (item, copy) in replica {
        match products.get_mut(&item) {
            Some(owned) => {
                owned.replica_age_ms = copy.replica_age_ms;
                owned.replica_price = copy.unit_price.filter(|p| Some(*p) != owned.unit_price);
            }
            None if !catalog.inventory => {
                products.insert(item, copy);
            }
            None => {}
        }
    }
    catalog.products = products.into_values().collect();
    board.hub.set(&catalog);
}
