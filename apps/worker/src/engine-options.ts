/** A job's resolved configuration -> the engine's runTuning options: the engine's mapping, loaded without TF.js. */
export { engineCompressionOptions, engineRunOptions, engineTuneOptions } from '@edgetune/engine/job-options';
