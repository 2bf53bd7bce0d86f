-- Workers also report their step-time factor: the measured step time of a reference training workload
-- over the planner's forecast for it at the measured SGEMM throughput (engine schedule/speed.ts), so that
-- the API's time forecasts follow the device. Null: not measured (the planner assumes 1).

-- AlterTable
ALTER TABLE "workers" ADD COLUMN "step_time_factor" DOUBLE PRECISION;
