// The one place a training config meets its method: stage → Stage. A new method is a new
// file beside these and one line here; the compiler asks for every stage the
// schema lists.
import type { TrainingStage } from '../../../../preload/types/trainingSchema'
import { GrpoStage } from './grpo'
import { KtoStage } from './kto'
import { PreferenceStage } from './preference'
import { SftStage } from './sft'
import type { Stage, StageContext } from './stage'

const stages: { [S in TrainingStage]: (ctx: StageContext) => Stage } = {
  sft: (ctx) => new SftStage(ctx),
  dpo: (ctx) => new PreferenceStage(ctx),
  kto: (ctx) => new KtoStage(ctx),
  grpo: (ctx) => new GrpoStage(ctx)
}

export function createStage(ctx: StageContext): Stage {
  return stages[ctx.cfg.stage](ctx)
}

export { NonFiniteError, type MicroBatch, type MicroOutcome, type Stage } from './stage'
