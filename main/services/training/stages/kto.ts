// Stage kto: single answers labelled desirable or undesirable, against the reference. The KL
// estimate z₀ pairs each record's prompt with its neighbour's completion (rotated by one
// within the micro-batch); it only feeds the detached z₀, so its policy pass runs without
// gradients before the train pass. Each micro-batch's mean loss counts 1/(micro-batches in
// the step).
import { collate, klSequences, sequenceSums, tokenGradients, type UnpairedExample } from '../batches'
import { ktoKlPartner, ktoLoss } from '../losses'
import { joinSequence } from '../sequences'
import { assertFinite, auxTerm, backward, referenceSums, withAux, sum, type MicroBatch, type MicroOutcome, type MicroRun, type RunOptions, type Stage, type StageContext } from './stage'
import { ReferenceCache } from './referenceCache'

export class KtoStage implements Stage {
  readonly usesReference = true
  /** Summed reference log-probs: "<split>:<i>" for record i's completion, "<split>:<i>:kl:<j>"
   *  for the KL pair of record i's prompt with record j's completion. */
  private readonly refs = new ReferenceCache()
  readonly checkpoint = this.refs.checkpoint

  constructor(private readonly ctx: StageContext) {}

  private completions(records: UnpairedExample[]) {
    return records.map((r) => joinSequence(r.prompt, r.completion, this.ctx.cfg.cutoff_len))
  }

  private klKey(mb: MicroBatch, b: number): string {
    return `${mb.split}:${mb.idx[b]}:kl:${mb.idx[ktoKlPartner(b, mb.idx.length)]}`
  }

  async reference(mb: MicroBatch): Promise<void> {
    const { split, idx } = mb
    const n = idx.length
    const keys = idx.flatMap((i, b) => [`${split}:${i}`, this.klKey(mb, b)])
    if (this.refs.holds(keys)) return
    const records = mb.examples as UnpairedExample[]
    const batch = collate([...this.completions(records), ...klSequences(records, this.ctx.cfg.cutoff_len)], this.ctx.padId)
    const logps = await referenceSums(this.ctx.model, batch)
    this.refs.fill(keys, (j) => logps[j % 2 === 0 ? j / 2 : n + (j - 1) / 2]!)
  }

  step(micros: MicroBatch[]): MicroRun[] {
    return micros.map((mb) => (o) => this.run(mb, micros.length, o))
  }

  private async run(mb: MicroBatch, micros: number, o: RunOptions): Promise<MicroOutcome> {
    const { cfg, model, padId } = this.ctx
    const scale = 1 / micros
    await this.reference(mb)
    const records = mb.examples as UnpairedExample[]
    const { split, idx } = mb
    const klBatch = collate(klSequences(records, cfg.cutoff_len), padId)
    const policyKl = sequenceSums(await model.logps(klBatch, { adapters: true, train: false }), klBatch).logps
    const batch = collate(this.completions(records), padId)
    const { logps, tokens } = sequenceSums(await model.logps(batch, { adapters: true, train: o.train, dropoutSeed: o.dropoutSeed }), batch)
    // The KL pass above feeds the detached z₀ only: the aux loss is this train pass's.
    const aux = auxTerm(this.ctx, micros, o.train)
    const res = ktoLoss(
      {
        policy: logps,
        ref: Float64Array.from(idx, (i) => this.refs.get(`${split}:${i}`)),
        policyKl,
        refKl: Float64Array.from(idx, (_, b) => this.refs.get(this.klKey(mb, b))),
        desirable: records.map((r) => r.desirable)
      },
      { beta: cfg.pref_beta, desirableWeight: cfg.kto_chosen_weight, undesirableWeight: cfg.kto_rejected_weight }
    )
    assertFinite('loss', [res.loss])
    assertFinite('loss gradient', res.grad)
    if (o.train) await backward(model, tokenGradients(batch, res.grad.map((g) => g * scale)), aux)
    return withAux({ loss: res.loss * scale, metrics: res.metrics, tokens: sum(tokens) }, aux)
  }
}
