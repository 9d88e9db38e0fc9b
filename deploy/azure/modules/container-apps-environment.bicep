// The Container Apps environment: workload profiles (Consumption), in its own subnet, internal.
// Internal means the environment has no public address at all: its apps answer only on a
// private load-balancer address inside the network, which API Management (in the same network)
// calls. Logs go to Azure Monitor and from there, by a diagnostic setting, to Log Analytics: no
// workspace key is handed to the environment.

param name string
param location string
param tags object
param subnetId string
param logAnalyticsWorkspaceId string

resource environment 'Microsoft.App/managedEnvironments@2024-03-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    vnetConfiguration: {
      infrastructureSubnetId: subnetId
      internal: true
    }
    workloadProfiles: [
      {
        name: 'Consumption'
        workloadProfileType: 'Consumption'
      }
    ]
    appLogsConfiguration: {
      destination: 'azure-monitor'
    }
    zoneRedundant: false
  }
}

resource logs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: environment
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

output id string = environment.id
output name string = environment.name
// Apps are at https://<app>.<defaultDomain>; the domain exists only once the environment does.
output defaultDomain string = environment.properties.defaultDomain
output staticIp string = environment.properties.staticIp
