// SFT: mean negative log-likelihood of the masked-in tokens. No reference. Within an optimiser
// step every token counts the same, so each micro-batch's NLL sum is divided by the masked
// tokens of the whole accumulated batch (docs/algorithms.md, "SFT").
import { collate, sequenceSums, tokenGradients } from '../batches'
import { maskedCount, type Example, type Sequence } from '../sequences'
import { assertFinite, auxTerm, backward, withAux, type MicroBatch, type MicroOutcome, type MicroRun, type RunOptions, type Stage, type StageContext } from './stage'

function sftSequence(ex: Example): Sequence {
  if (ex.kind !== 'sft') throw new Error(`internal: expected an sft example, got ${ex.kind}`)
  return ex.sequence
}

export class SftStage implements Stage {
  readonly usesReference = false

  constructor(private readonly ctx: StageContext) {}

  async reference(): Promise<void> {}

  step(micros: MicroBatch[]): MicroRun[] {
    const stepTokens = micros.reduce((n, mb) => n + mb.examples.reduce((k, e) => k + maskedCount(sftSequence(e)), 0), 0)
    return micros.map((mb) => (o) => this.run(mb, stepTokens, micros.length, o))
  }

  private async run(mb: MicroBatch, stepTokens: number, micros: number, o: RunOptions): Promise<MicroOutcome> {
    const { model, padId } = this.ctx
    const batch = collate(mb.examples.map(sftSequence), padId)
    const lp = await model.logps(batch, { adapters: true, train: o.train, dropoutSeed: o.dropoutSeed })
    const aux = auxTerm(this.ctx, micros, o.train)
    const { logps, tokens } = sequenceSums(lp, batch)
    let nll = 0
    let n = 0
    for (let b = 0; b < batch.batch; b++) {
      nll -= logps[b]!
      n += tokens[b]!
    }
    assertFinite('loss', [nll])
    if (o.train) await backward(model, tokenGradients(batch, new Float64Array(batch.batch).fill(-1 / stepTokens)), aux)
    return withAux({ loss: nll / stepTokens, metrics: {}, tokens: n }, aux)
  }
}
