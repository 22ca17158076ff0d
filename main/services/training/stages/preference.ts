// Stage dpo: preference pairs under one of the pair losses (pref_loss): the DPO family
// (sigmoid, hinge, ipo, sigmoid_norm) against the reference, or the reference-free ORPO and
// SimPO. Chosen and rejected run as one concatenated batch [chosen..., rejected...]. Each
// micro-batch's mean pair loss counts 1/(micro-batches in the step).
import { collate, pairSequences, sequenceSums, tokenGradients, type PairExample } from '../batches'
import { pairLoss, pairLossUsesReference } from '../losses'
import { assertFinite, auxTerm, backward, referenceSums, withAux, sum, type MicroBatch, type MicroOutcome, type MicroRun, type RunOptions, type Stage, type StageCheckpoint, type StageContext } from './stage'
import { ReferenceCache } from './referenceCache'

export class PreferenceStage implements Stage {
  readonly usesReference: boolean
  /** Summed reference log-probs: "<split>:<i>:c" and "<split>:<i>:r" for pair i. */
  private readonly refs = new ReferenceCache()
  readonly checkpoint?: StageCheckpoint

  constructor(private readonly ctx: StageContext) {
    this.usesReference = pairLossUsesReference(ctx.cfg.pref_loss)
    if (this.usesReference) this.checkpoint = this.refs.checkpoint
  }

  private static key(split: MicroBatch['split'], i: number, side: 'c' | 'r'): string {
    return `${split}:${i}:${side}`
  }

  private static keys(mb: MicroBatch): string[] {
    return [...mb.idx.map((i) => PreferenceStage.key(mb.split, i, 'c')), ...mb.idx.map((i) => PreferenceStage.key(mb.split, i, 'r'))]
  }

  private batchOf(mb: MicroBatch) {
    return collate(pairSequences(mb.examples as PairExample[], this.ctx.cfg.cutoff_len), this.ctx.padId)
  }

  async reference(mb: MicroBatch): Promise<void> {
    if (!this.usesReference) return
    // The batch's chosen sequences, then its rejected ones: the keys' order.
    const keys = PreferenceStage.keys(mb)
    if (this.refs.holds(keys)) return
    const logps = await referenceSums(this.ctx.model, this.batchOf(mb))
    this.refs.fill(keys, (j) => logps[j]!)
  }

  step(micros: MicroBatch[]): MicroRun[] {
    return micros.map((mb) => (o) => this.run(mb, micros.length, o))
  }

  private async run(mb: MicroBatch, micros: number, o: RunOptions): Promise<MicroOutcome> {
    const { cfg, model } = this.ctx
    const scale = 1 / micros
    await this.reference(mb)
    const { split, idx } = mb
    const n = idx.length
    const batch = this.batchOf(mb)
    const lp = await model.logps(batch, { adapters: true, train: o.train, dropoutSeed: o.dropoutSeed })
    const aux = auxTerm(this.ctx, micros, o.train)
    const { logps, tokens } = sequenceSums(lp, batch)
    const ref = (side: 'c' | 'r') => (this.usesReference ? Float64Array.from(idx, (i) => this.refs.get(PreferenceStage.key(split, i, side))) : null)
    const res = pairLoss(
      {
        policyChosen: logps.subarray(0, n), policyRejected: logps.subarray(n),
        refChosen: ref('c'), refRejected: ref('r'),
        chosenTokens: tokens.subarray(0, n), rejectedTokens: tokens.subarray(n)
      },
      { kind: cfg.pref_loss, beta: cfg.pref_beta, labelSmoothing: cfg.dpo_label_smoothing, ftx: cfg.pref_ftx, simpoGamma: cfg.simpo_gamma }
    )
    assertFinite('loss', [res.loss])
    if (o.train) {
      assertFinite('loss gradient', [...res.gradChosen, ...res.gradRejected])
      const g = new Float64Array(2 * n)
      for (let b = 0; b < n; b++) {
        g[b] = res.gradChosen[b]! * scale
        g[n + b] = res.gradRejected[b]! * scale
      }
      await backward(model, tokenGradients(batch, g), aux)
    }
    return withAux({ loss: res.loss * scale, metrics: res.metrics, tokens: sum(tokens) }, aux)
  }
}
