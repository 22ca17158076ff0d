// The readers of a GRPO run's completions (completions/step-NNNNN.jsonl): the steps that have a
// file, ascending by number rather than by name; a step's lines as written, a torn last line
// skipped; errors that name the run or the step; and the same calls carried over serve mode's
// WebSocket as the renderer makes them.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import type { BridgeResponse } from '../../preload/types/bridge'
import type { GrpoCompletion } from '../../preload/types/training'
import { createServices } from '../../main/services'
import { completionsFile } from '../../main/services/training/completions'
import { completionSteps, createRunHandlers, readCompletions, RunsService } from '../../main/services/training/runs'
import { startServeServer } from '../../main/transport/serveServer'

function completion(step: number, group: number, index: number, reward: number): GrpoCompletion {
  return {
    step, group, index, prompt: `What is ${group} + ${group}?`, completion: `<think>…</think><answer>${2 * group}</answer>`,
    rewards: { accuracy: reward, format: null }, reward, advantage: reward - 0.5, tokens: 12 + index, clipped: index === 1
  }
}

const jsonl = (lines: unknown[]) => lines.map((l) => JSON.stringify(l) + '\n').join('')

/** A GRPO run folder with completions at the given steps (2 groups × 2 completions each). */
async function writeRun(root: string, name: string, steps: number[]): Promise<string> {
  const dir = join(root, name)
  await mkdir(join(dir, 'completions'), { recursive: true })
  await writeFile(join(dir, 'run.json'), JSON.stringify({ stage: 'grpo', model_name_or_path: '/m' }))
  for (const step of steps)
    await writeFile(completionsFile(dir, step), jsonl([0, 1].flatMap((g) => [0, 1].map((i) => completion(step, g, i, i)))))
  return dir
}

describe('GRPO completions readers', () => {
  let root: string
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'tb-completions-'))
  })
  afterAll(() => rm(root, { recursive: true, force: true }))

  it('reads the file of a step zero-padded to 5 digits', () => {
    expect(completionsFile('/r', 3)).toBe(join('/r', 'completions', 'step-00003.jsonl'))
    expect(completionsFile('/r', 123456)).toBe(join('/r', 'completions', 'step-123456.jsonl'))
  })

  it('lists the steps with a completions file in numeric order, ignoring other files', async () => {
    const dir = await writeRun(root, 'steps', [10, 2, 1, 100000])
    await writeFile(join(dir, 'completions', 'notes.txt'), 'x')
    await writeFile(join(dir, 'completions', 'step-7.jsonl'), '') // not 5 digits: not the trainer's
    await writeFile(join(dir, 'completions', 'step-00004.jsonl.tmp-1'), '')
    expect(await completionSteps(dir)).toEqual([1, 2, 10, 100000])
  })

  it('gives no steps for a run without a completions folder (an SFT run, a GRPO run before its first step)', async () => {
    const dir = join(root, 'sft')
    await mkdir(dir)
    expect(await completionSteps(dir)).toEqual([])
  })

  it('reads a step as written and skips a torn last line', async () => {
    const dir = await writeRun(root, 'torn', [1, 2])
    const file = completionsFile(dir, 2)
    const whole = jsonl([completion(2, 0, 0, 1), completion(2, 0, 1, 0)])
    await writeFile(file, whole + JSON.stringify(completion(2, 1, 0, 1)).slice(0, 40))
    const lines = await readCompletions(dir, 2)
    expect(lines).toEqual([completion(2, 0, 0, 1), completion(2, 0, 1, 0)])
    expect(await readCompletions(dir, 1)).toHaveLength(4)
  })

  it('names the step and the steps there are when a step has no file', async () => {
    const dir = await writeRun(root, 'missing', [1, 2, 3])
    await expect(readCompletions(dir, 7)).rejects.toThrow(/missing has no completions for step 7 .*step-00007\.jsonl is missing.*steps with completions: 1, 2, 3/)
    const empty = join(root, 'empty')
    await mkdir(empty)
    await expect(readCompletions(empty, 1)).rejects.toThrow(/no completions for step 1 .*it has no completions yet/)
    await expect(readCompletions(dir, 0)).rejects.toThrow(/bad step 0/)
    await expect(readCompletions(dir, 1.5)).rejects.toThrow(/bad step 1\.5/)
  })

  it('the runs service and its handlers read by run id and name an unknown run', async () => {
    const runsRoot = join(root, 'runs')
    await writeRun(runsRoot, 'grpo-a', [1, 3])
    const runs = new RunsService({ runsRoot })
    expect(await runs.completionSteps('grpo-a')).toEqual([1, 3])
    expect((await runs.completions('grpo-a', 3)).map((c) => [c.group, c.index])).toEqual([[0, 0], [0, 1], [1, 0], [1, 1]])
    await expect(runs.completionSteps('nope')).rejects.toThrow(`no run "nope" (${join(runsRoot, 'nope')})`)
    await expect(runs.completions('nope', 1)).rejects.toThrow(/no run "nope"/)
    await expect(runs.completions('../x', 1)).rejects.toThrow(/bad run id/)
    const handlers = createRunHandlers({ runsRoot })
    expect(await handlers['runs.completionSteps']('grpo-a')).toEqual([1, 3])
    expect(await handlers['runs.completions'](join(runsRoot, 'grpo-a'), 1)).toHaveLength(4)
  })
})

describe('GRPO completions over serve mode', () => {
  let root: string
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'tb-completions-serve-'))
  })
  afterAll(() => rm(root, { recursive: true, force: true }))

  it('answers runs.completionSteps and runs.completions on the WebSocket, errors included', async () => {
    const dataDir = join(root, 'home')
    await writeRun(join(dataDir, 'runs'), 'grpo-ws', [2])
    const rendererDir = join(root, 'renderer')
    await mkdir(rendererDir)
    await writeFile(join(rendererDir, 'index.html'), '<!doctype html>')
    const server = await startServeServer({
      host: '127.0.0.1', port: 0, rendererDir, token: 't0k',
      createHandlers: (emit) => createServices({ dataDir, emit }).handlers
    })
    try {
      const socket = new WebSocket(`ws://127.0.0.1:${server.port}/ws?token=t0k`, { origin: server.origin })
      await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject))
      const replies = new Map<number, BridgeResponse>()
      socket.on('message', (data) => {
        const reply = JSON.parse(String(data)) as BridgeResponse
        replies.set(reply.id, reply)
      })
      const call = (id: number, channel: string, args: unknown[]) =>
        new Promise<BridgeResponse>((resolve, reject) => {
          socket.send(JSON.stringify({ id, channel, args }))
          const end = Date.now() + 5000
          const tick = () => {
            if (replies.has(id)) resolve(replies.get(id)!)
            else if (Date.now() > end) reject(new Error(`no reply to ${channel} (id ${id}) within 5 s`))
            else setTimeout(tick, 5)
          }
          tick()
        })
      expect(await call(1, 'runs.completionSteps', ['grpo-ws'])).toEqual({ id: 1, ok: true, result: [2] })
      const lines = await call(2, 'runs.completions', ['grpo-ws', 2])
      expect(lines.ok && (lines.result as GrpoCompletion[]).length).toBe(4)
      const missing = await call(3, 'runs.completions', ['grpo-ws', 5])
      expect(missing.ok).toBe(false)
      expect(!missing.ok && missing.error.message).toMatch(/no completions for step 5 .*steps with completions: 2/)
      socket.close()
    } finally {
      await server.close()
    }
  })
})
