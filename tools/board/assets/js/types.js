// @ts-check
// The page contract as JSDoc types: each mirrors a payload of the board's `page` module
// (tools/board/src/page.rs), field for field. Nothing runs here; the panels import the types.

/**
 * @typedef {{kind: string, label: string}} PoisonKind
 * @typedef {'waiting'|'done'|'sent'|'refused'|'undoing'|'undone'} Tone
 * @typedef {{statuses: string[], final_statuses: string[], tones: Record<string, Tone>,
 *   drills: string[], poison_kinds: PoisonKind[]}} Vocabulary
 *   The domain's words: the page has no list of statuses, drills or poison kinds of its own.
 * @typedef {{t: number, depth: (number|null)[], consumers: (number|null)[]}} Sample
 * @typedef {{queues: string[], points: Sample[]}} QueueHistory
 * @typedef {{name: string, retry: boolean, messages: number|null, consumers: number|null,
 *   unacked: number|null, publish: number|null, deliver: number|null}} QueueRow
 * @typedef {{item: string, qty: number, name?: string|null, unit_price?: number|null,
 *   currency?: string|null}} LineShown
 *   `unit_price` in minor units (899 EUR is 8.99 €); absent: price unknown.
 * @typedef {{order_id: string, item: string, qty: number, lines: LineShown[],
 *   total: number|null, currency: string|null, student_id: string|null,
 *   status: string, reason: string|null, created_at: number, updated_at: number}} OrderRow
 * @typedef {{counts: Record<string, number>, lists: Record<string, string[]>,
 *   orders: Record<string, OrderRow>}} Orders
 * @typedef {{item: string, available: number, initial: number, reserved: number,
 *   released: number, balanced: boolean}} StockRow
 * @typedef {{items: StockRow[], violations: string[]}} Stock
 * @typedef {{item: string, name: string|null, unit_price: number|null, currency: string|null,
 *   stock: number|null, low_threshold: number|null, low: boolean, out: boolean,
 *   age_ms: number|null, replica_price: number|null}} ProductRow
 * @typedef {{products: ProductRow[], inventory: boolean, replica: boolean,
 *   notes: string[]}} Catalog
 * @typedef {{alert: string, judged_by: 'board'|'prometheus', severity: string, title: string,
 *   for_secs: number, state: LightState, detail: string[]}} AlertLight
 * @typedef {{lights: AlertLight[], needs_prometheus: string[], prometheus: string|null}} Alerts
 * @typedef {{position: number, key: string, order_id: string|null, reason: string,
 *   service: string, routing_key: string|null, at: number|null, attempts: number|null,
 *   body_preview: string}} DlqEntry
 * @typedef {{depth: number|null, entries: DlqEntry[], peeked_depth: number|null,
 *   peeked_at: number|null, note: string|null}} Dlq
 * @typedef {'green'|'amber'|'red'} LightState
 * @typedef {{id: string, title: string, state: LightState, detail: string[]}} Light
 * @typedef {{lights: Light[], at: number, took_ms: number, error?: undefined}
 *   | {error: string, at: number, lights?: undefined}} Invariants
 * @typedef {{name: string, service: string, pid: number|null, running: boolean,
 *   startable: boolean}} Instance
 * @typedef {{stopped_at: number, back_at: number, restart: string}} Outage
 * @typedef {{run_dir: string, instances: Instance[], faults_refused: string|null,
 *   redis_stop: boolean, redis_outage: Outage|null, scripts_dir: string|null}} Services
 * @typedef {'open'|'token'|'refused'} ActionPolicy
 * @typedef {{broker: boolean, redis: boolean, management: boolean, vhost: string,
 *   prefix: string, listen: string, actions: ActionPolicy, drill: string|null,
 *   traces: number, spans: number}} Status
 * @typedef {'running'|'passed'|'failed'} DrillState
 * @typedef {{name: string, state: DrillState, started_at: number, ended_at: number|null,
 *   exit_code: number|null, lines: string[]}} DrillRun
 * @typedef {{at: number, ok: boolean, text: string}} Activity
 * @typedef {{from: string, to: string, kind: string, at: number|null, what: string,
 *   why: string, event: string|null, event_id: string|null}} Step
 * @typedef {{headline: string, steps: Step[], notes: string[]}} Journey
 * @typedef {'request'|'outbox'|'publish'|'queue'|'handler'} PhaseKind
 * @typedef {{phase: PhaseKind, start_ms: number, ms: number}} Phase
 * @typedef {{label: string, service: string, routing_key: string|null, queue: string|null,
 *   phases: Phase[], error: string|null}} WaterRow
 * @typedef {{t0: number, total_ms: number, rows: WaterRow[], traces: string[]}} Waterfall
 * @typedef {{lanes: string[], journey: Journey, requestable: string[],
 *   order: OrderRow|null, waterfall: Waterfall|null}} JourneyAnswer
 *   `requestable`: the statuses the order may be asked to become (the domain's table, sent
 *   with the journey: the page keeps no copy of it).
 * @typedef {{order_id: string, status: string}} Moved
 */

export {};
