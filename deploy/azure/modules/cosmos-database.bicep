// One service's Cosmos DB database: its containers exactly as the service creates them when it
// holds a key (tools-service/src/store/cosmos/mod.rs CosmosStore::containers(),
// agent-service/src/memory/cosmos/mod.rs CosmosConversations::containers()): with an identity it
// cannot create them and refuses to start if one is missing. Every container is partitioned on
// /pk; the composite indexes are the ones the services' ORDER BY queries need.
//
// The service's identity gets "Cosmos DB Built-in Data Contributor" on this database only: it
// can read and write items here, nothing in the other services' databases, and no database or
// container can be created, deleted or reconfigured with it.

param accountName string
param databaseName string

@allowed([
  'tools'
  'agent'
])
@description('Which service the database is for: its containers follow.')
param kind string

@description('Principal id of the service\'s managed identity.')
param principalId string

@description('Assign the data role on the account instead of the database (see README.md).')
param roleAtAccountScope bool = false

@description('False on a provisioned account: the database then shares autoscale throughput.')
param serverless bool = true
param autoscaleMaxThroughput int = 1000

var pk = {
  paths: [
    '/pk'
  ]
  kind: 'Hash'
  version: 2
}

var toolsContainers = [
  {
    // Every record of a customer in its partition; the tools list records by time, then number.
    id: 'customers'
    partitionKey: pk
    indexingPolicy: {
      indexingMode: 'consistent'
      automatic: true
      includedPaths: [
        {
          path: '/*'
        }
      ]
      compositeIndexes: [
        [
          {
            path: '/at'
            order: 'ascending'
          }
          {
            path: '/n'
            order: 'ascending'
          }
        ]
        [
          {
            path: '/at'
            order: 'descending'
          }
          {
            path: '/n'
            order: 'descending'
          }
        ]
      ]
    }
  }
  {
    // Which customer owns a subscription or an invoice: one point read instead of a fan-out.
    id: 'lookup'
    partitionKey: pk
  }
  {
    id: 'catalog'
    partitionKey: pk
  }
  {
    id: 'counters'
    partitionKey: pk
  }
]

var agentContainers = [
  {
    // Conversations expire per item (TTL on, no default): each write sets the item's own ttl.
    id: 'conversations'
    partitionKey: pk
    defaultTtl: -1
    indexingPolicy: {
      indexingMode: 'consistent'
      automatic: true
      includedPaths: [
        {
          path: '/*'
        }
      ]
      compositeIndexes: [
        [
          {
            path: '/last_active_at'
            order: 'descending'
          }
          {
            path: '/created_at'
            order: 'descending'
          }
        ]
        [
          {
            path: '/last_active_at'
            order: 'ascending'
          }
          {
            path: '/created_at'
            order: 'ascending'
          }
        ]
      ]
    }
  }
  {
    id: 'sessions'
    partitionKey: pk
    defaultTtl: -1
  }
]

resource account 'Microsoft.DocumentDB/databaseAccounts@2024-05-15' existing = {
  name: accountName
}

resource database 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases@2024-05-15' = {
  parent: account
  name: databaseName
  properties: {
    resource: {
      id: databaseName
    }
    options: serverless ? {} : {
      autoscaleSettings: {
        maxThroughput: autoscaleMaxThroughput
      }
    }
  }
}

resource containers 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-05-15' = [for container in (kind == 'tools' ? toolsContainers : agentContainers): {
  parent: database
  name: container.id
  properties: {
    resource: container
  }
}]

// Cosmos DB Built-in Data Contributor: data-plane reads and writes, no management operations.
resource dataContributor 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-05-15' = {
  parent: account
  name: guid(account.id, databaseName, principalId)
  properties: {
    roleDefinitionId: '${account.id}/sqlRoleDefinitions/00000000-0000-0000-0000-000000000002'
    principalId: principalId
    scope: roleAtAccountScope ? account.id : '${account.id}/dbs/${databaseName}'
  }
  dependsOn: [
    containers
  ]
}

output name string = database.name
