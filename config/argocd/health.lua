-- Argo CD resource health for logs.capturer.dev LogPipeline and SinkTarget (one
-- script for both kinds). Healthy: Ready=True. Degraded: Stalled=True,
-- Ready=False, or Ready=True with reason Degraded (the pipeline delivers with a
-- problem). Suspended: spec.suspend. Progressing: not yet observed, or
-- Reconciling=True.
local hs = {}
if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "spec.suspend is true"
  return hs
end
if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the controller to report status"
  return hs
end
if obj.metadata ~= nil and obj.metadata.generation ~= nil and
   (obj.status.observedGeneration == nil or obj.status.observedGeneration < obj.metadata.generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the controller to observe generation " .. obj.metadata.generation
  return hs
end
local ready, stalled, reconciling
for _, c in ipairs(obj.status.conditions) do
  if c.type == "Ready" then ready = c end
  if c.type == "Stalled" then stalled = c end
  if c.type == "Reconciling" then reconciling = c end
end
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.message
  return hs
end
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = reconciling.message
  return hs
end
if ready == nil then
  hs.status = "Progressing"
  hs.message = "No Ready condition yet"
  return hs
end
if ready.status == "True" and ready.reason ~= "Degraded" then
  hs.status = "Healthy"
elseif ready.reason == "Suspended" then
  hs.status = "Suspended"
else
  hs.status = "Degraded"
end
hs.message = ready.message
return hs
