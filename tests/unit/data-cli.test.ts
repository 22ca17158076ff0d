// `tunebench data ...` as scripts use it: exit codes, stdout/stderr, and an unchanged project
// after a failed import.
import { spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Project } from '../../main/services/data/store'
import { dump, tempDir, writeJsonl } from './data-helpers'

const root = join(__dirname, '..', '..')
function cli(...args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'main/cli.ts', 'data', ...args], { cwd: root, encoding: 'utf8' })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

let dir: string
let cleanup: () => void
beforeAll(() => ({ dir, cleanup } = tempDir('tb-cli-')))
afterAll(() => cleanup())

describe('tunebench data', () => {
  it('check reports format, count and the first problem', () => {
    const good = cli('check', join(root, 'resources/demo/preference.jsonl'))
    expect(good.code).toBe(0)
    expect(good.stdout).toContain('format: trl-preference')
    expect(good.stdout).toContain('records: 30')
    expect(good.stdout).toContain('problem: none')
    const f = writeJsonl(join(dir, 'bad.jsonl'), [{ prompt: 'a', completion: 'b', label: true }, { prompt: 'a', completion: 'b', label: 1 }])
    const bad = cli('check', f)
    expect(bad.code).toBe(1)
    expect(bad.stdout).toContain('records: 1')
    expect(bad.stdout).toContain(`problem: ${f}: line 2: field 'label': expected true or false`)
  })

  it('import, a failed import, and export', () => {
    const proj = join(dir, 'proj')
    const ok = cli('import', join(root, 'resources/demo/preference.jsonl'), join(root, 'resources/demo/sft.jsonl'), '--project', proj, '--split', 'train')
    expect(ok.stderr).toBe('')
    expect(ok.code).toBe(0)
    expect(ok.stdout).toContain('imported 30 records')
    const p = new Project(proj)
    const before = dump(p)
    p.close()

    const bad = join(dir, 'bad.jsonl')
    writeFileSync(bad, '{"prompt":"a","chosen":"b","rejected":"c"}\n{oops\n')
    const failed = cli('import', join(root, 'resources/demo/kto.jsonl'), bad, '--project', proj, '--split', 'val')
    expect(failed.code).not.toBe(0)
    expect(failed.stderr).toMatch(/bad\.jsonl: line 2: invalid JSON/)
    const q = new Project(proj)
    expect(dump(q)).toBe(before)
    q.close()

    const out = join(dir, 'dpo.jsonl')
    const ex = cli('export', '--project', proj, '--format', 'trl-dpo', '--out', out)
    expect(ex.code).toBe(0)
    expect(readFileSync(out, 'utf8')).toBe(readFileSync(join(root, 'resources/demo/preference.jsonl'), 'utf8'))
    const lf = cli('export', '--project', proj, '--format', 'llamafactory', '--out', join(dir, 'lf'))
    expect(lf.code).toBe(0)
    const info = JSON.parse(readFileSync(join(dir, 'lf', 'dataset_info.json'), 'utf8'))
    expect(Object.keys(info)).toEqual(['tunebench_dpo', 'tunebench_kto', 'tunebench_sft'])
    expect(info.tunebench_dpo).toMatchObject({ file_name: 'tunebench_dpo.jsonl', ranking: true })
    expect(info.tunebench_sft).toMatchObject({ formatting: 'sharegpt', tags: { role_tag: 'role', content_tag: 'content' } })
  })

  it('usage errors exit 2', () => {
    expect(cli('import', 'x.jsonl').code).toBe(2)
    expect(cli('export', '--project', dir).stderr).toMatch(/needs --project DIR --format F --out PATH/)
    expect(cli('import', 'x.jsonl', '--project', dir, '--split', 'test').stderr).toMatch(/--split must be train or val/)
  })
})
