// The Cosmos DB (NoSQL) account. Keys are switched off (disableLocalAuth), so the services reach
// their data with their Entra identities and data-plane roles only (cosmos-database.bicep), and
// nobody can change databases or containers with a key either. Reached only through its private
// endpoint. Serverless by default: a demo that sits idle costs storage only.

param name string
param location string
param tags object

@description('Serverless (pay per request unit) or provisioned throughput (set on each database).')
param serverless bool = true

param privateEndpointSubnetId string
param dnsZoneId string

resource account 'Microsoft.DocumentDB/databaseAccounts@2024-05-15' = {
  name: name
  location: location
  tags: tags
  kind: 'GlobalDocumentDB'
  properties: {
    databaseAccountOfferType: 'Standard'
    consistencyPolicy: {
      // The services read their own writes within a session; ETags guard concurrent writers.
      defaultConsistencyLevel: 'Session'
    }
    locations: [
      {
        locationName: location
        failoverPriority: 0
        isZoneRedundant: false
      }
    ]
    capabilities: serverless ? [
      {
        name: 'EnableServerless'
      }
    ] : []
    // One region, one write region: the services' ETag conditions assume a single writer region.
    enableMultipleWriteLocations: false
    disableLocalAuth: true
    disableKeyBasedMetadataWriteAccess: true
    publicNetworkAccess: 'Disabled'
    minimalTlsVersion: 'Tls12'
  }
}

module endpoint 'private-endpoint.bicep' = {
  name: 'pe-${name}'
  params: {
    name: 'pe-${name}'
    location: location
    tags: tags
    subnetId: privateEndpointSubnetId
    targetResourceId: account.id
    groupId: 'Sql'
    dnsZoneId: dnsZoneId
  }
}

output name string = account.name
// COSMOSDB_ENDPOINT: https://<account>.documents.azure.com:443/
output endpoint string = account.properties.documentEndpoint
