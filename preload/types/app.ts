// Pure types of the app.* channels (no Node imports: the renderer type-checks them).

/** A dataset bundled in resources/demo. */
export interface DemoDataset {
  /** The file name, e.g. "preference.jsonl". */
  name: string
  /** Absolute path, ready for data.previewImport / data.import. */
  file: string
  /** One line from resources/demo/datasets.json; '' when the manifest has none for this file. */
  description: string
}

/** What the app ships so a newcomer has something to open, label and train. */
export interface DemoResources {
  /** Absolute path of the bundled tiny Llama (resources/demo-model). */
  modelDir: string
  /** The dataset files present in resources/demo at run time, by name. */
  datasets: DemoDataset[]
}
