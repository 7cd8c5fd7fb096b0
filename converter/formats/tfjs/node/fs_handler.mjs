// The fs IOHandler shared by run_model.mjs (the TF.js runner) and the tests' training script.
import fs from 'node:fs';
import path from 'node:path';

/** An IOHandler that reads model.json and its weight shards with fs. */
export function fileHandler(tf, modelDir) {
  return {
    async load() {
      const jsonPath = path.join(modelDir, 'model.json');
      const modelJSON = JSON.parse(await fs.promises.readFile(jsonPath, 'utf8'));
      return tf.io.getModelArtifactsForJSON(modelJSON, async (manifest) => {
        const specs = [];
        const shards = [];
        for (const group of manifest) {
          specs.push(...group.weights);
          for (const p of group.paths) {
            const buf = await fs.promises.readFile(path.join(modelDir, p));
            shards.push(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
          }
        }
        return [specs, shards];  // WeightData may be a list of shards: no concatenated copy
      });
    },
  };
}
