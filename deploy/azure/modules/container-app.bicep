// One service as a container app: its own identity (image pulls, Cosmos DB, Azure OpenAI), one
// revision at a time, HTTP scaling, and probes on the service's own endpoints: /healthz (alive)
// and /readyz (store reachable, token keys loaded), on the port BIND_ADDR names.
//
// The image is the one `azd deploy` pushed. Before the first deploy there is none yet, so the app
// is created with a public placeholder image and no replica (minReplicas 0, nothing to probe):
// the real port and probes are in place from the start, the placeholder never has to pass them,
// and the first request after `azd deploy` starts the real image. The next `azd provision`
// (any later `azd up`) restores minReplicas.

param name string
param location string
param tags object

@description('The service name in azure.yaml; azd finds the app by this tag.')
param serviceName string

param environmentId string
param identityId string
param registryServer string

@description('azd sets SERVICE_<NAME>_RESOURCE_EXISTS once the app exists.')
param exists bool

@description('azd sets SERVICE_<NAME>_IMAGE_NAME after a deploy; empty before the first one.')
param imageName string = ''

@description('The port the service listens on; its BIND_ADDR is 0.0.0.0:<this>.')
param targetPort int

// No secrets: the apps authenticate to every Azure resource, and the agent to Entra, with their
// managed identities.
@description('The container\'s environment variables ({name, value}).')
param env array

param minReplicas int = 1
param maxReplicas int = 3

@description('Requests in flight per replica before another replica is added.')
param concurrentRequests int = 20

param cpu string = '0.5'
param memory string = '1Gi'

var placeholderImage = 'mcr.microsoft.com/k8se/quickstart:latest'

module current 'fetch-image.bicep' = {
  name: '${name}-current-image'
  params: {
    exists: exists
    name: name
  }
}

var deployedImage = !empty(imageName) ? imageName : current.outputs.image
// The placeholder counts as nothing deployed: provisioning twice before the first deploy must
// not give it replicas that would have to pass the service's probes.
var firstDeployment = empty(deployedImage) || deployedImage == placeholderImage

resource app 'Microsoft.App/containerApps@2024-03-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': serviceName
  })
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    environmentId: environmentId
    workloadProfileName: 'Consumption'
    configuration: {
      activeRevisionsMode: 'Single'
      ingress: {
        // "external" in an internal environment: reachable on the environment's private address
        // from the network (API Management), never from the internet, since the environment has
        // no public address. `external: false` would limit the app to callers inside the
        // environment, which API Management is not.
        external: true
        targetPort: targetPort
        transport: 'http'
        allowInsecure: false
        traffic: [
          {
            latestRevision: true
            weight: 100
          }
        ]
      }
      registries: [
        {
          server: registryServer
          identity: identityId
        }
      ]
    }
    template: {
      containers: [
        {
          name: serviceName
          image: firstDeployment ? placeholderImage : deployedImage
          env: env
          resources: {
            cpu: json(cpu)
            memory: memory
          }
          probes: [
            {
              // A tools service seeds an empty database before it answers: up to five minutes.
              type: 'Startup'
              httpGet: {
                path: '/healthz'
                port: targetPort
              }
              initialDelaySeconds: 5
              periodSeconds: 30
              timeoutSeconds: 5
              failureThreshold: 10
            }
            {
              type: 'Liveness'
              httpGet: {
                path: '/healthz'
                port: targetPort
              }
              periodSeconds: 15
              timeoutSeconds: 5
              failureThreshold: 3
            }
            {
              type: 'Readiness'
              httpGet: {
                path: '/readyz'
                port: targetPort
              }
              periodSeconds: 10
              timeoutSeconds: 5
              failureThreshold: 3
            }
          ]
        }
      ]
      scale: {
        minReplicas: firstDeployment ? 0 : minReplicas
        maxReplicas: maxReplicas
        rules: [
          {
            name: 'http-concurrency'
            http: {
              metadata: {
                concurrentRequests: string(concurrentRequests)
              }
            }
          }
        ]
      }
    }
  }
}

output name string = app.name
output fqdn string = app.properties.configuration.ingress.fqdn
