-- wrk: PATCH /v1/items/{id} with If-Match: * over random ids.
local token = os.getenv("STEWARD_BENCH_TOKEN")
math.randomseed(os.time())
request = function()
  local id = math.random(1, 10000)
  local body = '{"qty": ' .. math.random(1, 1000) .. '}'
  return wrk.format("PATCH", "/v1/items/" .. id, {
    ["Authorization"] = "Bearer " .. token,
    ["If-Match"] = "*",
    ["Content-Type"] = "application/json",
  }, body)
end
