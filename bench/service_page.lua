-- wrk: GET /v1/items?category=eq.N&limit=20 over random categories.
local token = os.getenv("STEWARD_BENCH_TOKEN")
math.randomseed(os.time())
request = function()
  local c = math.random(0, 49)
  return wrk.format("GET", "/v1/items?category=eq." .. c .. "&limit=20", { ["Authorization"] = "Bearer " .. token })
end
