'use strict';
/*
 * The storefront lifecycle driven through GetCandy's own published JavaScript client
 * (@getcandy/js-client, generated from GetCandy's OpenAPI description, axios underneath), the way
 * a GetCandy storefront calls it; lifecycle.test.js runs its steps with node's own test runner.
 * Every storefront request goes through one of the client's methods, except the one storefront
 * route the client has no method for (applying a coupon); the admin set-up (a product, a coupon),
 * the customer's sign-up and sign-in and the read of our own OpenAPI document use axios directly.
 *
 * Each answer is checked twice: against the client's own typings (the model interfaces in its
 * dist/models/*.d.ts: every field we send that the model declares must have the declared type)
 * and for what a storefront reads from it (the values the next step needs). A mismatch throws
 * `Mismatch`; the summary says what ran, which storefront routes the client has no method for,
 * and where our answers differ from the client's typings in ways recorded in README.md.
 */

const fs = require('node:fs');
const path = require('node:path');
const axios = require('axios');
const candy = require('@getcandy/js-client');

const CLIENT_PACKAGE = require('@getcandy/js-client/package.json');
const CLIENT_DIST = path.join(path.dirname(require.resolve('@getcandy/js-client/package.json')), 'dist');
const UK_ADDRESS = {
  firstname: 'Ada',
  lastname: 'Lovelace',
  address: "12 St James's Square",
  city: 'London',
  county: 'Greater London',
  zip: 'SW1Y 4JH',
  country: 'United Kingdom',
  phone: '+44 20 7946 0000',
};

// Where our answer deliberately differs from the client's typings: the field, the type we send,
// and why. Each is recorded in README.md; a difference not listed here fails the run.
const KNOWN_DIFFERENCES = {
  'ProductVariant.tax': {
    sent: 'number',
    why: "the variant's tax rate in percent (API.md); upstream sent `tax` only as the `include=tax` relation",
  },
  'Address.country': {
    sent: 'string',
    why: "an order's addresses carry the country's name, as upstream's orders did (API.md)",
  },
};

// Fields the client's typings declare that no answer of this run has (README.md says more). A
// declared field missing from every answer and not listed here fails the run: a field a storefront
// may read went away. Relations (`include`) this checkout does not ask for are listed too.
const EXPECTED_ABSENT = {
  // One model in the typings for saved addresses and an order's details: an order's details never
  // had the saved-address fields, and say `zip`, not `postal_code`.
  Address: [
    '_default', 'delivery', 'delivery_instructions', 'last_used_at', 'meta', 'postal_code', 'salutation', 'shipping',
  ],
  // Upstream sent has_exclusions; `order` is a relation.
  Basket: ['has_exclusions', 'order'],
  // Relations.
  Order: ['basket', 'discounts', 'logs', 'user'],
  // Upstream sent both.
  Product: ['drafted_at', 'option_data'],
  // Upstream sent the prices, group_pricing and dimensions; the others are relations.
  ProductVariant: [
    'customer_pricing', 'depth', 'factor_tax', 'group_pricing', 'height', 'image', 'product', 'tiers',
    'total_tax', 'volume', 'width',
  ],
  // Upstream sent attribute_data only with `full_response`, else its fields flat, as we do.
  ShippingMethod: ['attribute_data'],
  // Upstream sent them.
  ShippingPrice: ['min_basket_tax'],
  Transaction: ['address_matched', 'cvc_matched', 'postcode_matched', 'threed_secure'],
  // Never sent by upstream either: no id, no success status, no pagination on these lists.
  PaymentProvider: ['id'],
  // The generator escaped upstream's `default` (a reserved word for it) as `_default` without
  // mapping the JSON key: upstream sent `default`, as we do (also on a saved address, above).
  Currency: ['_default'],
  PaymentType: ['success_status'],
  PaymentTypeCollection: ['meta'],
  TransactionCollection: ['meta'],
};

// A gateway answer that is not what the client and a storefront expect. Its stack is its message:
// where in this file it was noticed says nothing the message does not.
class Mismatch extends Error {
  constructor(message) {
    super(message);
    this.name = 'Mismatch';
    this.stack = `Mismatch: ${message}`;
  }
}

function expect(condition, message) {
  if (!condition) throw new Mismatch(message);
}

// ---------------------------------------------------------------------------------------------
// The client's own description of itself: its models (typings) and its routes (generated code).

function stripComments(text) {
  return text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
}

function loadModels() {
  const models = new Map();
  const dir = path.join(CLIENT_DIST, 'models');
  for (const file of fs.readdirSync(dir).filter((name) => name.endsWith('.d.ts'))) {
    const text = stripComments(fs.readFileSync(path.join(dir, file), 'utf8'));
    for (const [, name, body] of text.matchAll(/export interface (\w+) \{([^}]*)\}/g)) {
      const fields = new Map();
      for (const [, field, type] of body.matchAll(/^\s*'?(\w+)'?\??: (.+);\s*$/gm)) fields.set(field, type.trim());
      models.set(name, { fields });
    }
    for (const [, name, expr] of text.matchAll(/export declare type (\w+) = ([^;]+);/g)) {
      models.set(name, { alias: expr.trim() });
    }
  }
  return models;
}

// The route of every generated method, read from the client's request builders.
function loadRoutes() {
  const routes = new Map();
  const dir = path.join(CLIENT_DIST, 'api');
  const builder = new RegExp(
    String.raw`^ {8}(\w+): \([^)]*\) => __awaiter[\s\S]*?const localVarPath = ` +
      String.raw`\x60([^\x60]+)\x60[\s\S]*?\{ method: '(\w+)' \}`,
    'gm',
  );
  for (const file of fs.readdirSync(dir).filter((name) => name.endsWith('.js'))) {
    const text = fs.readFileSync(path.join(dir, file), 'utf8');
    const creators = text.slice(0, text.indexOf('ApiFp = function'));
    for (const [, method, route, verb] of creators.matchAll(builder)) routes.set(method, `${verb} ${route}`);
  }
  if (routes.size === 0) throw new Error(`no request builder found in ${dir}: another layout of the client?`);
  return routes;
}

// "PUT /basket-lines/{basketLineId}/add" and "PUT /basket-lines/{id}/add" name one route.
function routeKey(route) {
  return route.replace(/\{\w+\}/g, '{}');
}

// ---------------------------------------------------------------------------------------------
// Shapes: an answer against a type of the client's typings.

function splitTop(expr, separator) {
  const parts = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < expr.length; i += 1) {
    if (expr[i] === '<') depth += 1;
    else if (expr[i] === '>') depth -= 1;
    else if (depth === 0 && expr.startsWith(separator, i)) {
      parts.push(expr.slice(start, i).trim());
      start = i + separator.length;
    }
  }
  parts.push(expr.slice(start).trim());
  return parts;
}

class Shapes {
  constructor(models) {
    this.models = models;
    this.seen = new Map(); // model -> the declared fields some answer had
    this.extra = new Map(); // model -> fields we send that the client does not declare
    this.known = new Map(); // "Model.field" -> the known difference, when seen
  }

  fieldsOf(name) {
    const model = this.models.get(name);
    if (!model) throw new Error(`the client has no model ${name}`);
    if (model.fields) return model.fields;
    const merged = new Map();
    for (const part of splitTop(model.alias, '&')) for (const [k, v] of this.fieldsOf(part)) merged.set(k, v);
    return merged;
  }

  // Whether `value` has type `type`; a model's fields are checked (and any mismatch thrown) on the way.
  conforms(value, type, where) {
    // The typings were generated without nullability, and upstream sent null for unset fields.
    if (value === null) return true;
    const alternatives = splitTop(type, '|');
    if (alternatives.length > 1) return alternatives.some((alt) => this.quietly(value, alt, where));
    const array = /^Array<(.+)>$/.exec(type);
    if (array) return Array.isArray(value) && value.every((item, i) => this.conforms(item, array[1], `${where}[${i}]`));
    if (['string', 'number', 'boolean'].includes(type)) return typeof value === type;
    if (type === 'object') return typeof value === 'object';
    if (type === 'any') return true;
    if (/^'.*'$/.test(type)) return value === type.slice(1, -1);
    if (typeof value !== 'object' || Array.isArray(value)) return false;
    this.checkModel(value, type, where);
    return true;
  }

  quietly(value, type, where) {
    try {
      return this.conforms(value, type, where);
    } catch (error) {
      if (error instanceof Mismatch) return false;
      throw error;
    }
  }

  checkModel(value, name, where) {
    const fields = this.fieldsOf(name);
    if (!this.seen.has(name)) this.seen.set(name, new Set());
    for (const [field, item] of Object.entries(value)) {
      const declared = fields.get(field);
      if (declared === undefined) {
        this.note(this.extra, name, field);
        continue;
      }
      this.seen.get(name).add(field);
      if (this.conforms(item, declared, `${where}.${field}`)) continue;
      const known = KNOWN_DIFFERENCES[`${name}.${field}`];
      const sent = Array.isArray(item) ? 'array' : typeof item;
      expect(
        known && known.sent === sent,
        `${where}.${field}: the client's ${name}.${field} is ${declared}, ` +
          `we sent ${sent} ${JSON.stringify(item).slice(0, 200)}`,
      );
      this.known.set(`${name}.${field}`, { client: declared, ...known });
    }
  }

  note(map, name, field) {
    if (!map.has(name)) map.set(name, new Set());
    map.get(name).add(field);
  }

  check(body, name, where) {
    expect(body !== null && typeof body === 'object', `${where}: not a JSON object: ${JSON.stringify(body)}`);
    this.checkModel(body, name, where);
    return body;
  }

  // Per model: the fields the client declares that no answer had, and those it does not declare.
  report() {
    const absent = new Map();
    for (const [name, seen] of this.seen) {
      const missing = [...this.fieldsOf(name).keys()].filter((field) => !seen.has(field));
      if (missing.length) absent.set(name, missing);
    }
    const listed = (map) => Object.fromEntries([...map].sort().map(([k, v]) => [k, [...v].sort()]));
    return { known_differences: Object.fromEntries(this.known), absent: listed(absent), extra: listed(this.extra) };
  }
}

// ---------------------------------------------------------------------------------------------
// Calls through the client, recorded for the summary.

// GetCandy's currency header: once the shopper picks a currency a storefront sends it on every
// call, and the prices in the answers are in that currency.
const CURRENCY_HEADER = 'X-CANDY-CURRENCY';

class Storefront {
  // With `accessToken`, a signed-in customer's storefront: the client never sends a token itself
  // (README.md), so it goes in baseOptions.headers, on every call, as the currency header does.
  constructor(baseUrl, routes, shapes, accessToken) {
    const headers = accessToken ? { Authorization: `Bearer ${accessToken}` } : {};
    this.configuration = new candy.Configuration({ basePath: baseUrl, baseOptions: { headers } });
    this.apis = {
      products: new candy.ProductsApi(this.configuration),
      variants: new candy.ProductVariantsApi(this.configuration),
      currencies: new candy.CurrenciesApi(this.configuration),
      baskets: new candy.BasketsApi(this.configuration),
      orders: new candy.OrdersApi(this.configuration),
      countries: new candy.CountriesApi(this.configuration),
      payments: new candy.PaymentsApi(this.configuration),
    };
    this.baseUrl = baseUrl;
    this.routes = routes;
    this.shapes = shapes;
    this.calls = [];
  }

  // The shopper's currency from now on: every generated method reads baseOptions when called.
  showPricesIn(code) {
    this.configuration.baseOptions.headers[CURRENCY_HEADER] = code;
  }

  // One client method (`api.method`): a 2xx whose body has the client's `model` shape.
  async body(name, args, model, note) {
    const [api, method] = name.split('.');
    const route = this.routes.get(method);
    let response;
    try {
      response = await this.apis[api][method](...args);
    } catch (error) {
      if (!error.response) throw error;
      const body = JSON.stringify(error.response.data).slice(0, 300);
      throw new Mismatch(`${method} (${route}) answered HTTP ${error.response.status}: ${body}`);
    }
    this.calls.push({ method, route, status: response.status, ...(note ? { note } : {}) });
    if (model) this.shapes.check(response.data, model, method);
    return response.data;
  }

  // The same, for the resource itself: the body's `data`.
  async data(name, args, model, note) {
    const body = await this.body(name, args, model, note);
    return body && body.data;
  }

  // One client method expected to be refused with `status`, in GetCandy's error shape.
  async refused(name, args, status, note) {
    const [api, method] = name.split('.');
    const route = this.routes.get(method);
    try {
      await this.apis[api][method](...args);
    } catch (error) {
      if (!error.response) throw error;
      expect(error.response.status === status, `${method} (${route}): HTTP ${error.response.status}, not ${status}`);
      this.calls.push({ method, route, status, note });
      return this.shapes.check(error.response.data, 'ApiError', `${method} (HTTP ${status})`);
    }
    throw new Mismatch(`${method} (${route}) succeeded; expected HTTP ${status}`);
  }

  // A storefront route the client has no method for, sent as its methods send theirs (the same
  // base path and headers) with axios; the resource (`data`) of a 2xx with the client's `model`.
  async withoutClientMethod(route, url, body, model) {
    const [verb] = route.split(' ');
    const { headers } = this.configuration.baseOptions;
    let response;
    try {
      response = await axios.request({ method: verb, url: `${this.baseUrl}${url}`, data: body, headers });
    } catch (error) {
      if (!error.response) throw error;
      const answer = JSON.stringify(error.response.data).slice(0, 300);
      throw new Mismatch(`${route} (no client method) answered HTTP ${error.response.status}: ${answer}`);
    }
    this.calls.push({ method: null, route, status: response.status, note: 'the client has no method for it' });
    return this.shapes.check(response.data, model, route).data;
  }
}

// Options the generated methods pass to axios: what a storefront adds where a method has no
// parameter for it (GetCandy's `include` on most reads and writes, a body on two methods).
const including = (include) => ({ query: { include } });
const INCLUDE_VIA_OPTIONS = 'include through options.query: the method takes none';
const BODY_VIA_OPTIONS = 'body through options.data: the method takes none';
const PAGE_VIA_OPTIONS = 'page through options.query: the method takes none';
const HEADER_VIA_OPTIONS = `${CURRENCY_HEADER} through options.headers: for this call only`;

function isId(value) {
  return typeof value === 'string' && /^[a-z0-9]+$/.test(value);
}

function near(a, b) {
  return Math.abs(a - b) < 0.005;
}

// A basket's total is its goods, plus tax, less discounts (major units).
function addsUp(basket) {
  return near(basket.total, basket.sub_total + basket.tax_total - basket.discount_total);
}

// ---------------------------------------------------------------------------------------------
// Money as a storefront reads it: catalogue and basket answers carry major units (JSON numbers,
// 12.5), an order's answers minor units (1250), as upstream's did.

function minorUnits(major, places) {
  return Math.round(major * 10 ** places);
}

// The conversion rule (services/basket/README.md, "Currencies"), computed here apart from the
// gateway: a unit price in minor units of the base times the rate (the decimal string GET
// /currencies gives), rounded half up to the target's minor unit; exact, in BigInt.
function convert(amount, rate, basePlaces, places) {
  const [whole, fraction = ''] = rate.split('.');
  const numerator = BigInt(amount) * BigInt(whole + fraction) * 10n ** BigInt(places);
  const denominator = 10n ** BigInt(fraction.length + basePlaces);
  return Number((2n * numerator + denominator) / (2n * denominator));
}

// ---------------------------------------------------------------------------------------------
// The lifecycle, one method per step (lifecycle.test.js runs them in order, each on the state the
// ones before left).

// What the admin set-up makes: a product of two variants (prices in the base currency, ex-tax)
// and a coupon of a fixed amount off that product, so that both convert into the basket's currency.
const VARIANTS = [
  { suffix: 'A', name: 'Small', price: '12.50' },
  { suffix: 'B', name: 'Large', price: '19.99' },
];
const COUPON_OFF = '5.00';
// The guest checks out in euros (README.md): the shop's second currency in the demo data.
const SECOND_CURRENCY = 'EUR';

class Lifecycle {
  // Environment: GATEWAY_URL (the gateway's /api/v1 base), ADMIN_TOKEN (a bearer token for the
  // set-up), SUMMARY_FILE (where the summary goes, as JSON; none: not written).
  constructor(env) {
    this.baseUrl = (env.GATEWAY_URL || '').replace(/\/+$/, '');
    this.adminToken = env.ADMIN_TOKEN || '';
    this.summaryFile = env.SUMMARY_FILE || '';
  }

  // The client's models and routes, and a guest's storefront.
  start() {
    if (!this.baseUrl) throw new Error('GATEWAY_URL (the gateway base, e.g. http://localhost:8000/api/v1) is required');
    if (!this.adminToken) throw new Error('ADMIN_TOKEN (an admin bearer token: make -s token) is required');
    this.routes = loadRoutes();
    this.shapes = new Shapes(loadModels());
    this.shop = new Storefront(this.baseUrl, this.routes, this.shapes);
    this.summary = { client: `${CLIENT_PACKAGE.name}@${CLIENT_PACKAGE.version}`, gateway: this.baseUrl };
  }

  // The currencies a currency switcher lists: the default one (the base, rate 1) and the second
  // currency, enabled, with its rate as a decimal string.
  async currencies() {
    const listed = await this.shop.body('currencies.getCurrencies', [], 'CurrencyCollection');
    expect(Array.isArray(listed.data) && Number.isInteger(listed.meta.total), 'getCurrencies: no data/meta.total');
    for (const currency of listed.data) {
      const places = currency.decimal_places;
      expect(/^[A-Z]{3}$/.test(currency.code) && Number.isInteger(places), `currency ${JSON.stringify(currency)}`);
      expect(/^\d+(\.\d+)?$/.test(currency.exchange_rate), `${currency.code}: exchange_rate ${currency.exchange_rate}`);
    }
    const defaults = listed.data.filter((c) => c.default === true);
    expect(defaults.length === 1 && defaults[0].enabled, `getCurrencies: default ${JSON.stringify(defaults)}`);
    [this.base] = defaults;
    expect(Number(this.base.exchange_rate) === 1, `the default currency's rate is ${this.base.exchange_rate}`);
    this.second = listed.data.find((c) => c.code === SECOND_CURRENCY);
    expect(this.second && this.second.enabled, `getCurrencies: ${SECOND_CURRENCY} is not an enabled currency`);
    this.summary.currencies = Object.fromEntries(listed.data.map((c) => [c.code, c.exchange_rate]));
  }

  // Base-currency minor units in the second currency.
  converted(amount) {
    return convert(amount, this.second.exchange_rate, this.base.decimal_places, this.second.decimal_places);
  }

  // Set-up outside the client, its failure reported by status and body only (never the request,
  // which carries a password or a token).
  static async outside(route, request) {
    try {
      return await request();
    } catch (error) {
      if (!error.response) throw new Error(`set-up ${route}: ${error.code || error.message}`);
      const { status, data } = error.response;
      throw new Mismatch(`set-up ${route} answered HTTP ${status}: ${JSON.stringify(data)}`);
    }
  }

  // As admin, with raw axios: the client's postProducts sends upstream's admin form (name, url,
  // family_id...) as query parameters where our admin API takes a JSON body, and its postDiscounts
  // types upstream's discount (a per-locale name, dates, channels), whose coupon and reward were
  // other calls; ours is one body.
  async admin(route, url, body) {
    const headers = { Authorization: `Bearer ${this.adminToken}` };
    const response = await Lifecycle.outside(route, () => axios.post(`${this.baseUrl}${url}`, body, { headers }));
    return response.data.data;
  }

  // A product of two variants, 10 of each in stock, and a coupon for a fixed amount off it.
  async setUp() {
    const sku = `JSC-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`.toUpperCase();
    const variants = VARIANTS.map((v) => ({
      sku: `${sku}-${v.suffix}`,
      name: v.name,
      price: v.price,
      tax_rate_bp: 2000,
      inventory: 10,
      weight_grams: 500,
    }));
    const created = { name: `JS client ${sku}`, variants };
    const product = await this.admin('POST /products', '/products?include=variants', created);
    this.productId = product.id;
    const off = { name: `JS client ${sku}`, coupon: sku, fixed_amount: COUPON_OFF, product_ids: [product.id] };
    this.couponCode = (await this.admin('POST /discounts', '/discounts', off)).coupon;
    expect(this.couponCode === sku, `set-up POST /discounts: coupon ${this.couponCode}`);
  }

  // The catalogue in the base currency, then one variant in the second currency (the currency
  // header on that call only), priced by the conversion rule.
  async browse() {
    const { shop } = this;
    const listing = await shop.body('products.getProducts', ['variants'], 'ProductCollection');
    expect(Array.isArray(listing.data) && Number.isInteger(listing.meta.total), 'getProducts: no data/meta.total');
    const product = await shop.data('products.getProductsProductId', [this.productId, 'variants'], 'ProductResponse');
    expect(product.id === this.productId, `getProductsProductId: asked for ${this.productId}, got ${product.id}`);
    // The client's Product does not declare `variants`: check each against its ProductVariant.
    product.variants.data.forEach((v, i) => shop.shapes.check(v, 'ProductVariant', `product.variants[${i}]`));
    this.variants = VARIANTS.map((wanted) => {
      const variant = product.variants.data.find((v) => v.sku.endsWith(`-${wanted.suffix}`));
      const buyable = variant && variant.purchasable && variant.inventory >= 5;
      expect(buyable, `variant ${wanted.suffix}: ${JSON.stringify(variant)}`);
      const inBase = `variant ${variant.sku} in ${variant.currency}, not the default currency ${this.base.code}`;
      expect(variant.currency === this.base.code, inBase);
      const price = minorUnits(variant.unit_price, this.base.decimal_places);
      const listed = minorUnits(Number(wanted.price), this.base.decimal_places);
      expect(price === listed, `${variant.sku}: unit_price ${variant.unit_price}, expected ${wanted.price}`);
      expect(typeof variant.unit_tax === 'number', `${variant.sku}: unit_tax ${variant.unit_tax}`);
      return { ...variant, base_price: price, price: this.converted(price) };
    });
    const [, large] = this.variants;
    const inSecond = [large.id, { headers: { [CURRENCY_HEADER]: this.second.code } }];
    const shown = await shop.data(
      'variants.getProductsVariantsProductVariantId',
      inSecond,
      'ProductVariantResponse',
      HEADER_VIA_OPTIONS,
    );
    expect(shown.id === large.id && shown.currency === this.second.code, `variant shown in ${shown.currency}`);
    const price = minorUnits(shown.unit_price, this.second.decimal_places);
    expect(price === large.price, `${large.sku} in ${this.second.code}: ${shown.unit_price}, expected ${large.price}`);
  }

  // A basket of two lines, 3 of the first variant (after the line calls a storefront makes) and 1
  // of the second, made in the base currency; then the shopper switches to the second currency
  // (putBasketsBasketId with the currency, and the header on every call from then on).
  async fillBasket() {
    const { shop } = this;
    const [small, large] = this.variants;
    const one = { variants: [{ id: small.id, quantity: 1 }] };
    let basket = await shop.data('baskets.postBaskets', [one], 'BasketResponse');
    expect(isId(basket.id) && basket.currency === this.base.code, `postBaskets: ${basket.id} in ${basket.currency}`);
    const args = [basket.id, including('lines.variant')];
    basket = await shop.data('baskets.getBasketsBasketId', args, 'BasketResponse', INCLUDE_VIA_OPTIONS);
    expect(basket.lines.data.length === 1, `getBasketsBasketId: ${basket.lines.data.length} lines, expected 1`);
    const line = basket.lines.data[0];
    expect(line.quantity === 1 && line.variant.data.id === small.id, `basket line: ${JSON.stringify(line)}`);
    shop.shapes.check(line.variant.data, 'ProductVariant', 'basket.lines[0].variant');

    // Upstream sent a basket's lines only when asked (`include`), as we do.
    const quantityAfter = async (method, quantity, expected) => {
      const args = [line.id, { quantity }, including('lines')];
      const changed = await shop.data(`baskets.${method}`, args, 'BasketResponse');
      const now = changed.lines.data.find((l) => l.id === line.id);
      expect(now && now.quantity === expected, `${method}: quantity ${now && now.quantity}, expected ${expected}`);
      return changed;
    };
    await quantityAfter('putBasketLinesBasketLineIdAdd', 2, 3);
    await quantityAfter('putBasketLinesBasketLineIdRemove', 1, 2);
    await quantityAfter('putBasketLinesBasketLineId', 3, 3);
    const second = { basket_id: basket.id, variants: [{ id: large.id, quantity: 1 }] };
    basket = await shop.data('baskets.postBasketLines', [second, including('lines')], 'BasketResponse');
    const quantities = basket.lines.data.map((l) => `${l.quantity}`).sort();
    expect(basket.lines.data.length === 2 && `${quantities}` === '1,3', `postBasketLines: quantities ${quantities}`);
    const inBase = (3 * small.base_price + large.base_price) / 10 ** this.base.decimal_places;
    expect(near(basket.sub_total, inBase), `sub_total ${basket.sub_total}, expected ${inBase}`);

    const note = { key: 'gift_note', value: 'Happy birthday' };
    basket = await shop.data('baskets.postBasketsBasketIdMeta', [basket.id, note], 'BasketResponse');
    expect(basket.meta.gift_note === note.value, `postBasketsBasketIdMeta: meta ${JSON.stringify(basket.meta)}`);
    this.summary.put_basket_without_body = await bareBasketUpdate(shop, basket.id);

    const change = { data: { currency: this.second.code }, ...including('lines.variant') };
    basket = await shop.data('baskets.putBasketsBasketId', [basket.id, change], 'BasketResponse', BODY_VIA_OPTIONS);
    expect(basket.currency === this.second.code, `putBasketsBasketId: the basket is in ${basket.currency}`);
    expect(basket.meta.gift_note === note.value, `putBasketsBasketId: meta ${JSON.stringify(basket.meta)}`);
    shop.showPricesIn(this.second.code);
    const places = this.second.decimal_places;
    for (const variant of this.variants) {
      const priced = basket.lines.data.find((l) => l.variant.data.id === variant.id);
      const shown = priced && minorUnits(priced.unit_price, places);
      expect(shown === variant.price, `${variant.sku}: ${shown} in ${basket.currency}, expected ${variant.price}`);
    }
    const goods = (3 * small.price + large.price) / 10 ** places;
    expect(near(basket.sub_total, goods), `sub_total ${basket.sub_total} ${basket.currency}, expected ${goods}`);
    expect(addsUp(basket), `basket totals do not add up: ${JSON.stringify(basket)}`);
    this.basket = basket;
  }

  // The coupon: applied (the client has no method: upstream described only the DELETE), taken
  // off with the client's deleteBasketsBasketIdDiscounts, and applied again. Its fixed amount is
  // in the base currency, converted by the same rule as the prices.
  async coupon() {
    const { shop } = this;
    const { id } = this.basket;
    const route = 'POST /baskets/{id}/discounts';
    const apply = () =>
      shop.withoutClientMethod(route, `/baskets/${id}/discounts`, { coupon: this.couponCode }, 'BasketResponse');
    const places = this.second.decimal_places;
    const off = this.converted(minorUnits(Number(COUPON_OFF), this.base.decimal_places));
    let basket = await apply();
    expect(minorUnits(basket.discount_total, places) === off, `coupon: ${basket.discount_total} off, not ${off}`);
    await shop.body('baskets.deleteBasketsBasketIdDiscounts', [id], null);
    basket = await shop.data('baskets.getBasketsBasketId', [id], 'BasketResponse');
    expect(basket.discount_total === 0, `deleteBasketsBasketIdDiscounts: discount_total ${basket.discount_total}`);
    basket = await apply();
    expect(minorUnits(basket.discount_total, places) === off, `coupon again: discount_total ${basket.discount_total}`);
    expect(basket.currency === this.second.code, `the basket is in ${basket.currency}`);
    expect(addsUp(basket), `basket totals do not add up: ${JSON.stringify(basket)}`);
    this.discount = off;
    this.basket = basket;
  }

  // A second basket, without an order: its line deleted, then the basket itself; then it is gone.
  // deleteBasketLines takes no body, though upstream (and we) need `lines`; its typings declare the
  // answer as {data: {data: Basket}} where upstream sent {data: Basket}, as we do.
  async discardBasket() {
    const { shop } = this;
    const body = { variants: [{ id: this.variants[0].id, quantity: 1 }] };
    let spare = await shop.data('baskets.postBasketLines', [body, including('lines')], 'BasketResponse');
    expect(spare.lines.data.length === 1, `postBasketLines: ${JSON.stringify(spare)}`);
    const lines = { data: { lines: spare.lines.data.map((l) => ({ id: l.id })) }, ...including('lines') };
    spare = await shop.data('baskets.deleteBasketLines', [lines], 'BasketResponse', BODY_VIA_OPTIONS);
    expect(spare.lines.data.length === 0 && spare.total === 0, `deleteBasketLines: ${JSON.stringify(spare)}`);
    await shop.data('baskets.deleteBasketsBasketId', [spare.id], null);
    const gone = await shop.refused('baskets.getBasketsBasketId', [spare.id], 404, 'the deleted basket');
    expect(gone.error.http_code === 404, `deleted basket: ${JSON.stringify(gone)}`);
  }

  // The United Kingdom, as an address form finds it. Upstream's list is paginated (50 a page, at
  // most 200 with per_page): walk the pages.
  async unitedKingdom() {
    const { shop } = this;
    const countries = [];
    for (let page = 1, last = 1; page <= last; page += 1) {
      const args = [undefined, 200, { query: { page } }];
      const listed = await shop.body('countries.getCountries', args, 'CountryCollection', PAGE_VIA_OPTIONS);
      expect(Number.isInteger(listed.meta.last_page), `getCountries: meta ${JSON.stringify(listed.meta)}`);
      countries.push(...listed.data);
      last = listed.meta.last_page;
    }
    const uk = countries.find((c) => c.iso_a_2 === 'GB');
    expect(uk && uk.name === 'United Kingdom', 'getCountries: no United Kingdom (GB)');
    const country = await shop.data('countries.getCountriesCountryId', [uk.id], 'CountryResponse');
    expect(country.id === uk.id && country.iso_a_3 === 'GBR', `getCountriesCountryId: ${JSON.stringify(country)}`);
    this.address = { ...UK_ADDRESS, country: country.name };
  }

  // The order from the basket, with its addresses, contact and delivery.
  async order() {
    this.ordered = await prepareOrder(this.shop, this.basket, this.address);
  }

  async pay() {
    await pay(this.shop, this.ordered.id);
  }

  // The placed order as a confirmation page reads it, its invoice and the order types: in the
  // basket's currency, at the rate GET /currencies gave, for the total the shopper was shown.
  async confirm() {
    const { shop, ordered } = this;
    const include = including('lines,shipping,transactions');
    const args = [ordered.id, include];
    const order = await shop.data('orders.getOrdersOrderId', args, 'OrderResponse', INCLUDE_VIA_OPTIONS);
    expect(order.status === 'payment-received', `order status ${order.status}, expected payment-received`);
    expect(/^\S*\d{4}-\d{2}-\d{4}$/.test(order.reference), `reference ${order.reference}`);
    expect(order.invoice_reference === `#INV-${order.reference}`, `invoice_reference ${order.invoice_reference}`);
    expect(order.display_id.startsWith('#'), `display_id ${order.display_id}`);
    expect(order.currency === this.second.code, `the order is in ${order.currency}, expected ${this.second.code}`);
    expect(order.conversion === this.second.exchange_rate, `conversion ${order.conversion}, expected the rate listed`);

    const goods = order.lines.data.filter((l) => !l.is_shipping);
    const [small, large] = this.variants;
    const expected = [
      { sku: small.sku, quantity: 3, unit_price: small.price },
      { sku: large.sku, quantity: 1, unit_price: large.price },
    ];
    const got = goods.map((l) => ({ sku: l.sku, quantity: l.quantity, unit_price: l.unit_price }));
    got.sort((a, b) => a.sku.localeCompare(b.sku));
    const [gotText, expectedText] = [JSON.stringify(got), JSON.stringify(expected)];
    expect(gotText === expectedText, `order lines ${gotText}, expected ${expectedText}`);
    const sum = (field) => goods.reduce((total, l) => total + l[field], 0);
    const discounts = `discount_total ${order.discount_total}, lines ${sum('discount_total')}, not ${this.discount}`;
    expect(order.discount_total === this.discount && sum('discount_total') === this.discount, discounts);
    expect(order.sub_total === sum('line_total') - order.discount_total, `sub_total ${order.sub_total}`);
    // The goods cost what the basket showed, tax and coupon included.
    const places = this.second.decimal_places;
    const basketTotal = minorUnits(this.basket.total, places);
    const goodsTotal = sum('line_total') - sum('discount_total') + sum('tax_total');
    expect(goodsTotal === basketTotal, `the goods cost ${goodsTotal}, the basket showed ${basketTotal}`);
    const delivery = `delivery_total ${order.delivery_total}, the price chosen ${ordered.delivery.rate}`;
    expect(order.delivery_total === ordered.delivery.rate, delivery);
    expect(order.shipping.data.is_shipping === true, `order.shipping ${JSON.stringify(order.shipping)}`);
    const sumOfTotals = order.sub_total + order.delivery_total + order.tax_total;
    expect(order.order_total === sumOfTotals, `order_total ${order.order_total}, not the sum ${sumOfTotals}`);
    const shown = `order_total ${order.order_total}, ${ordered.order_total} before payment`;
    expect(order.order_total === ordered.order_total, shown);
    const captured = order.transactions.data.filter((t) => t.success && !t.refund);
    const once = captured.length === 1 && captured[0].amount === order.order_total;
    expect(once, `transactions ${JSON.stringify(captured)}`);
    expect(Array.isArray(order.meta), `order meta ${JSON.stringify(order.meta)} is not an array`);

    const invoice = await shop.data('orders.getOrdersIdInvoice', [ordered.id], 'InvoiceResponse');
    expect(invoice.encoding === 'base64', `invoice encoding ${invoice.encoding}`);
    const pdf = Buffer.from(invoice.content, 'base64').subarray(0, 5).toString('latin1') === '%PDF-';
    expect(pdf, 'invoice is not a PDF');
    const types = await shop.data('orders.getOrdersTypes', [], 'OrderTypeCollection');
    const labelled = types.length > 0 && types.every((t) => typeof t.label === 'string');
    expect(labelled, `getOrdersTypes: ${JSON.stringify(types)}`);

    // The placed order's basket is used: upstream refused a second order from it, and so do we.
    await shop.refused('orders.postOrders', [{ basket_id: this.basket.id }], 403, "the placed order's basket");
    this.summary.order = {
      id: order.id,
      reference: order.reference,
      status: order.status,
      currency: order.currency,
      conversion: order.conversion,
      sub_total: order.sub_total,
      discount_total: order.discount_total,
      delivery_total: order.delivery_total,
      tax_total: order.tax_total,
      order_total: order.order_total,
      captured: captured[0].amount,
    };
  }

  // The same shopper signs in (README.md): their storefront keeps the currency they chose.
  async signedIn() {
    const customer = new Storefront(this.baseUrl, this.routes, this.shapes, await signUp(this.baseUrl));
    customer.calls = this.shop.calls;
    customer.showPricesIn(this.second.code);
    this.summary.signed_in = await signedInCheckout(this.shop, customer, this.variants[0], this.address);
  }

  // Every declared field some answer had, the summary, written to SUMMARY_FILE.
  async finish() {
    const report = this.shapes.report();
    for (const [name, fields] of Object.entries(report.absent)) {
      const lost = fields.filter((field) => !(EXPECTED_ABSENT[name] || []).includes(field));
      const names = lost.map((f) => `${name}.${f}`).join(', ');
      expect(lost.length === 0, `no answer had ${names}, which the client declares`);
    }
    const { summary } = this;
    summary.calls = this.shop.calls;
    summary.client_methods_used = [...new Set(this.shop.calls.map((c) => c.method).filter(Boolean))].sort();
    summary.set_up_without_client = [
      'POST /products, POST /discounts (admin: the product bought here and its coupon)',
      'POST /customers, POST /oauth/token (the signed-in customer)',
    ];
    summary.served_without_client_method = await servedWithoutClientMethod(this.baseUrl, this.routes);
    Object.assign(summary, report);
    if (this.summaryFile) fs.writeFileSync(this.summaryFile, `${JSON.stringify(summary, null, 2)}\n`);
    return summary;
  }
}

// The client's putBasketsBasketId sends no body; upstream never served PUT /baskets/{id}, we do
// (to change the currency), and a request without a body changes nothing: the basket as it is.
async function bareBasketUpdate(shop, basketId) {
  const response = await shop.apis.baskets.putBasketsBasketId(basketId);
  shop.shapes.check(response.data, 'BasketResponse', 'putBasketsBasketId (no body)');
  expect(response.data.data.id === basketId, `putBasketsBasketId, no body: ${JSON.stringify(response.data)}`);
  return { status: response.status };
}

// The order from the basket (in its currency), its addresses, contact and the cheapest delivery
// that costs something (a free collection would leave the delivery's price untried), from the
// prices in the order's currency. The order's id, its delivery and its total before payment.
async function prepareOrder(shop, basket, address) {
  let order = await shop.data('orders.postOrders', [{ basket_id: basket.id }], 'OrderResponse');
  expect(isId(order.id) && order.status === 'awaiting-payment', `postOrders: ${JSON.stringify(order).slice(0, 200)}`);
  expect(order.currency === basket.currency, `postOrders: in ${order.currency}, its basket in ${basket.currency}`);
  const { id } = order;
  order = await shop.data('orders.putOrdersIdShippingAddress', [id, address], 'OrderResponse');
  expect(order.shipping_details.zip === address.zip, `shipping_details ${JSON.stringify(order.shipping_details)}`);
  order = await shop.data('orders.putOrdersOrderIdBillingAddress', [id, address], 'OrderResponse');
  expect(order.billing_details.lastname === address.lastname, `billing_details: ${order.billing_details.lastname}`);
  const contact = { email: `js-client-${Date.now()}@example.com`, phone: address.phone };
  order = await shop.data('orders.putOrdersIdContact', [id, contact], 'OrderResponse');
  expect(order.contact_details.email === contact.email, `contact_details ${JSON.stringify(order.contact_details)}`);

  const prices = await shop.data('orders.getOrdersIdShippingMethods', [id], 'ShippingPriceCollection');
  expect(prices.length > 0, `getOrdersIdShippingMethods: no shipping price applies to a UK order in ${order.currency}`);
  for (const price of prices) {
    expect(isId(price.id) && Number.isInteger(price.rate), `shipping price: ${JSON.stringify(price)}`);
    expect(price.currency === order.currency, `shipping price ${price.id} in ${price.currency}, not ${order.currency}`);
    expect(typeof price.method.data.name === 'string', `shipping price without method.data.name: ${price.id}`);
  }
  const paid = prices.filter((p) => p.rate > 0);
  expect(paid.length > 0, `getOrdersIdShippingMethods: every price is free: ${JSON.stringify(prices)}`);
  const cheapest = paid.reduce((a, b) => (b.rate < a.rate ? b : a));
  const choice = { price_id: cheapest.id };
  order = await shop.data('orders.putOrdersIdShippingCost', [id, undefined, choice], 'OrderResponse');
  expect(order.shipping_method === cheapest.method.data.name, `shipping_method ${order.shipping_method}`);
  expect(order.delivery_total === cheapest.rate, `delivery_total ${order.delivery_total}, the rate ${cheapest.rate}`);
  return { id, delivery: { rate: cheapest.rate, method: cheapest.method.data.name }, order_total: order.order_total };
}

// The provider's client token and the payment types, then the sandbox's valid nonce.
async function pay(shop, orderId) {
  const provider = await shop.data('payments.getPaymentsProvider', [], 'PaymentProviderResponse');
  expect(typeof provider.client_token === 'string' && typeof provider.exires_at === 'string', 'getPaymentsProvider');
  const sandbox = await shop.data('payments.getPaymentProvider', ['sandbox', orderId], 'PaymentProviderResponse');
  expect(typeof sandbox.client_token === 'string' && sandbox.client_token !== '', 'getPaymentProvider: client_token');
  const types = await shop.data('payments.getPaymentsTypes', [], 'PaymentTypeCollection');
  expect(types.some((t) => t.handle === 'offline') && types.every((t) => isId(t.id)), `types ${JSON.stringify(types)}`);

  const payment = { order_id: orderId, payment_token: 'fake-valid-nonce' };
  let order = await shop.data('orders.postOrdersProcess', [payment], 'OrderResponse');
  // The answer may come before the saga has an outcome: then read the order until it is placed.
  const deadline = Date.now() + 30000;
  while (!order.placed_at) {
    expect(order.status !== 'failed', `postOrdersProcess: the order failed: ${JSON.stringify(order).slice(0, 300)}`);
    expect(Date.now() < deadline, `the order was not placed within 30 s (status ${order.status})`);
    await new Promise((resolve) => setTimeout(resolve, 200));
    order = await shop.data('orders.getOrdersOrderId', [orderId], 'OrderResponse');
  }
}

// A new customer, signed in: raw axios, as the client's postCustomers sends upstream's fields as
// query parameters (our POST /customers takes a JSON body) and it has no method for the OAuth2
// token endpoint. The access token.
async function signUp(baseUrl) {
  const suffix = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 10)}`;
  const account = { firstname: 'Ada', lastname: 'Lovelace', email: `js-client-${suffix}@example.com` };
  account.password = `Js-${suffix}-${Math.random().toString(36).slice(2, 10)}`;
  await Lifecycle.outside('POST /customers', () => axios.post(`${baseUrl}/customers`, account));
  const grant = new URLSearchParams({ grant_type: 'password', username: account.email, password: account.password });
  const tokens = (await Lifecycle.outside('POST /oauth/token', () => axios.post(`${baseUrl}/oauth/token`, grant))).data;
  expect(tokens.token_type === 'Bearer' && typeof tokens.access_token === 'string', 'POST /oauth/token: no token');
  return tokens.access_token;
}

// A customer who shopped as a guest signs in: claims the basket made before signing in, merges a
// second guest basket into it (resolve), checks it out with the token on every call, and finds the
// order first in their order history; to a guest holding its id the order is unknown.
async function signedInCheckout(guest, shop, variant, address) {
  const one = { variants: [{ id: variant.id, quantity: 1 }] };
  const before = await guest.data('baskets.postBaskets', [one], 'BasketResponse');
  const claimed = await shop.data('baskets.postBasketsBasketIdClaim', [before.id], 'BasketResponse');
  expect(claimed.id === before.id, `postBasketsBasketIdClaim: ${claimed.id}, expected ${before.id}`);
  const lines = including('lines');
  let current = await shop.data('baskets.getBasketsCurrent', [lines], 'BasketResponse', INCLUDE_VIA_OPTIONS);
  expect(current.id === before.id, `getBasketsCurrent: ${current.id}, expected the claimed ${before.id}`);
  const other = await guest.data('baskets.postBaskets', [one], 'BasketResponse');
  const resolve = [{ basket_id: other.id }, lines];
  current = await shop.data('baskets.postBasketsResolve', resolve, 'BasketResponse', INCLUDE_VIA_OPTIONS);
  const merged = current.lines.data.map((l) => l.quantity);
  expect(current.id === before.id && `${merged}` === '2', `postBasketsResolve: ${current.id}, quantities ${merged}`);

  const ordered = await prepareOrder(shop, current, address);
  await pay(shop, ordered.id);
  const history = await shop.body('orders.getOrders', [], 'OrderCollection');
  const listed = history.data.map((o) => o.id);
  expect(listed.length > 0 && listed[0] === ordered.id, `getOrders: ${listed}`);
  await guest.refused('orders.getOrdersOrderId', [ordered.id], 404, "a signed-in customer's order, to a guest");
  return { order_id: ordered.id, basket_id: current.id, currency: current.currency, orders_listed: history.meta.total };
}

// Our guest storefront routes (from our own OpenAPI document) that no client method calls.
async function servedWithoutClientMethod(baseUrl, routes) {
  const document = (await axios.get(`${baseUrl}/openapi.json`)).data;
  const covered = new Set([...routes.values()].map(routeKey));
  const missing = [];
  for (const [route, operations] of Object.entries(document.paths)) {
    for (const [verb, operation] of Object.entries(operations)) {
      // A guest's routes that also serve a customer (`x-commerce-customer: "optional"`) are a guest's.
      const signedInOnly = operation['x-commerce-customer'] === true;
      if (operation['x-commerce-admin'] || signedInOnly || route === '/openapi.json') continue;
      const name = `${verb.toUpperCase()} ${route}`;
      if (!covered.has(routeKey(name))) missing.push(name);
    }
  }
  return missing.sort();
}

module.exports = { Lifecycle };
