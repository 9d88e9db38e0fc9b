// The private network the platform lives in. Three subnets, each with one job:
//   snet-aca   the Container Apps environment (internal: no public IP at all)
//   snet-apim  API Management, injected in External mode: public gateway, private way to the apps
//   snet-pe    private endpoints of Cosmos DB and Azure OpenAI, whose public access is disabled
// and the private DNS zones that make the endpoints' names resolve to them inside the network.
// Nothing else is in the network, so the only caller that can reach the apps from outside the
// environment is API Management. Peering it to another network widens that: add rules to nsg-aca
// then (the default AllowVnetInBound admits every peered network).

param name string
param location string
param tags object

param addressPrefix string = '10.40.0.0/16'
@description('The Container Apps environment; workload-profile environments need at least a /27.')
param acaSubnetPrefix string = '10.40.0.0/23'
param apimSubnetPrefix string = '10.40.2.0/27'
param privateEndpointSubnetPrefix string = '10.40.3.0/27'

// What API Management needs in its subnet (classic tiers, stv2, External mode). Outbound goes to
// service tags the default outbound rules already allow.
var apimInboundRules = [
  {
    name: 'clients-https'
    source: 'Internet'
    port: '443'
  }
  {
    name: 'apim-management'
    source: 'ApiManagement'
    port: '3443'
  }
  {
    name: 'azure-load-balancer'
    source: 'AzureLoadBalancer'
    port: '6390'
  }
]

// The service zones of the private endpoints (public Azure cloud names).
var privateZones = [
  'privatelink.documents.azure.com'
  'privatelink.openai.azure.com'
]

resource acaNsg 'Microsoft.Network/networkSecurityGroups@2023-11-01' = {
  name: 'nsg-aca-${name}'
  location: location
  tags: tags
  properties: {
    securityRules: []
  }
}

resource apimNsg 'Microsoft.Network/networkSecurityGroups@2023-11-01' = {
  name: 'nsg-apim-${name}'
  location: location
  tags: tags
  properties: {
    securityRules: [for (rule, i) in apimInboundRules: {
      name: rule.name
      properties: {
        priority: 100 + i * 10
        direction: 'Inbound'
        access: 'Allow'
        protocol: 'Tcp'
        sourceAddressPrefix: rule.source
        sourcePortRange: '*'
        destinationAddressPrefix: 'VirtualNetwork'
        destinationPortRange: rule.port
      }
    }]
  }
}

resource peNsg 'Microsoft.Network/networkSecurityGroups@2023-11-01' = {
  name: 'nsg-pe-${name}'
  location: location
  tags: tags
  properties: {
    securityRules: []
  }
}

// Subnets are declared inside the network, not as child resources: a later deployment then
// cannot race a subnet update against the network's own.
resource vnet 'Microsoft.Network/virtualNetworks@2023-11-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        name: 'snet-aca'
        properties: {
          addressPrefix: acaSubnetPrefix
          networkSecurityGroup: {
            id: acaNsg.id
          }
          delegations: [
            {
              name: 'container-apps'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
      {
        name: 'snet-apim'
        properties: {
          addressPrefix: apimSubnetPrefix
          networkSecurityGroup: {
            id: apimNsg.id
          }
        }
      }
      {
        name: 'snet-pe'
        properties: {
          addressPrefix: privateEndpointSubnetPrefix
          networkSecurityGroup: {
            id: peNsg.id
          }
          privateEndpointNetworkPolicies: 'Enabled'
        }
      }
    ]
  }
}

resource zones 'Microsoft.Network/privateDnsZones@2020-06-01' = [for zone in privateZones: {
  name: zone
  location: 'global'
  tags: tags
}]

resource zoneLinks 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = [for (zone, i) in privateZones: {
  parent: zones[i]
  name: 'link-${name}'
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}]

output id string = vnet.id
output acaSubnetId string = resourceId('Microsoft.Network/virtualNetworks/subnets', vnet.name, 'snet-aca')
output apimSubnetId string = resourceId('Microsoft.Network/virtualNetworks/subnets', vnet.name, 'snet-apim')
output privateEndpointSubnetId string = resourceId('Microsoft.Network/virtualNetworks/subnets', vnet.name, 'snet-pe')
output cosmosZoneId string = zones[0].id
output openAiZoneId string = zones[1].id
