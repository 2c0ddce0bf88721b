// cart-service application code, written in Jsonnet for its functions and loops. It evaluates
// to the same document a YAML file would hold; `extends` is a plain field naming a YAML parent,
// and the usual merge rules apply to the result.
//
// cart-service has five hot APIs. For each, a function generates a p99 latency rollback alarm
// and a loop adds "at least 100 requests to it" to the one-box bake.

local apis = {
  // API name: p99 latency threshold in ms
  GetCart: 150,
  AddItem: 250,
  RemoveItem: 250,
  UpdateQuantity: 250,
  MergeGuestCart: 600,
};

local alarmName(api) = 'CartService_%s_High_P99_Latency' % api;
local apiNames = std.objectFields(apis);

local latencyAlarm(api, thresholdMs) = {
  metric: {
    metric: 'latency_ms',
    labels: { service: 'cart-service', api: api },
    statistic: 'p99',
    period: '1m',
    evaluation_periods: 5,
    datapoints_to_alarm: 3,
    comparison: 'GreaterThanThreshold',
    threshold: thresholdMs,
  },
};

{
  extends: '../../teams/storefront.yaml',
  pipeline: 'cart-service-code',
  service: 'cart-service',
  kind: 'code',

  sources: [
    { repository: 'https://git.example.com/storefront/cart-service.git', branch: 'main' },
  ],

  build: {
    command: std.join(' && ', [
      'go test -mod=vendor ./...',
      'go build -mod=vendor -o dist/cart-service ./cmd/cart-service',
    ]),
    outputs: ['dist/cart-service'],
  },

  alarms: {
    // Merged into the team's definitions, key by key.
    definitions: {
      [alarmName(api)]: latencyAlarm(api, apis[api])
      for api in apiNames
    },
    // A list replaces the inherited one whole, so the team's aggregate alarm is restated.
    rollback: ['Storefront_High_Severity_Aggregate'] + [alarmName(api) for api in apiNames],
  },

  bake: {
    one_box: {
      // Added to the inherited `requests: 100`.
      data_points: {
        ['api.%s.requests' % api]: 100
        for api in apiNames
      },
    },
  },
}
