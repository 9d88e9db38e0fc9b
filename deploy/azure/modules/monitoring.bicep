// The Log Analytics workspace every diagnostic setting of the deployment writes to: the Container
// Apps' console and system logs (where the services' JSON logs and audit events land), and API
// Management's gateway logs.

param name string
param location string
param tags object

@description('Days the logs are kept; 30 is included in the ingestion price.')
param retentionInDays int = 30

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
  }
}

output id string = workspace.id
output name string = workspace.name
